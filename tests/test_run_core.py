"""faceanon.run without a host: items, the manifest, the headless graph plan, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faceanon.run.graph import GraphError, parse_assignment, plan
from faceanon.run.items import ItemsError, list_items, output_relpath
from faceanon.run.manifest import FIELDS, Manifest
from faceanon.run.runner import Job, write_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_items_are_recursive_sorted_and_keep_relative_paths(tmp_path):
    for rel in ("b.png", "a/c.JPG", "a/d/e.webp", "clip.mp4", "notes.txt", ".hidden.png"):
        touch(tmp_path / "in" / rel)
    items = list_items(tmp_path / "in")
    assert [(i.rel, i.kind) for i in items] == [("a/c.JPG", "image"), ("a/d/e.webp", "image"), ("b.png", "image"),
                                               ("clip.mp4", "video")]
    assert all(Path(i.path).is_absolute() and Path(i.path).is_file() for i in items)
    assert output_relpath(items[0], ".png") == "a/c.png"


def test_single_files_and_list_files(tmp_path):
    video = touch(tmp_path / "v" / "clip.mov")
    assert [(i.rel, i.kind) for i in list_items(video)] == [("clip.mov", "video")]
    touch(tmp_path / "photos" / "x" / "1.png")
    touch(tmp_path / "photos" / "y" / "2.jpg")
    lst = tmp_path / "photos" / "todo.txt"
    lst.write_text(f"# a comment\nx/1.png\n\n{tmp_path / 'photos' / 'y' / '2.jpg'}\n")
    assert [i.rel for i in list_items(lst)] == ["x/1.png", "y/2.jpg"]
    (tmp_path / "bad.txt").write_text("x/1.doc\n")
    with pytest.raises(ItemsError, match="neither an image"):
        list_items(tmp_path / "bad.txt")


def test_inputs_that_would_share_an_output_are_refused(tmp_path):
    touch(tmp_path / "in" / "a.jpg")
    touch(tmp_path / "in" / "a.png")
    with pytest.raises(ItemsError, match="a.jpg and a.png would both be written"):
        list_items(tmp_path / "in")
    with pytest.raises(ItemsError, match="does not exist"):
        list_items(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ItemsError, match="no image or video"):
        list_items(tmp_path / "empty")


def record(rel, status="done", output=None):
    return {"input": rel, "output": output, "status": status, "faces": 1, "similarity_min": 0.1,
            "similarity_max": 0.2, "error": None, "seconds": 1.0}


def test_manifest_keeps_the_last_record_and_survives_a_partial_line(tmp_path):
    m = Manifest(tmp_path / "m.jsonl")
    with m:
        m.append(record("a.png", "failed"))
        m.append(record("a.png", "done", "a.png"))
    with open(m.path, "a") as f:
        f.write('{"input": "b.png", "stat')  # a run killed mid-write
    assert {k: v["status"] for k, v in m.read().items()} == {"a.png": "done"}
    with m:
        m.append(record("b.png", "no_face"))
    lines = m.path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["input"] == "b.png"
    assert set(m.read()) == {"a.png", "b.png"} and list(json.loads(lines[0])) == list(FIELDS)
    with m, pytest.raises(ValueError, match="fields"):
        m.append({"input": "c.png", "status": "done"})


def test_a_rerun_skips_finished_items_whose_output_is_in_place(tmp_path):
    for rel in ("a.png", "b.png", "c.png", "d.png"):
        touch(tmp_path / "in" / rel)
    out = tmp_path / "out"
    job = Job(list_items(tmp_path / "in"), out)
    with job.manifest:
        job.manifest.append(record("a.png", "done", "a.png"))
        job.manifest.append(record("b.png", "no_face"))
        job.manifest.append(record("c.png", "failed"))
        job.manifest.append(record("d.png", "done", "d.png"))  # its output was deleted since
    touch(out / "a.png")
    touch(out / "sub" / ".x.png.faceanon-part")  # a killed run's temporary file
    assert [i.rel for i in job.todo()] == ["c.png", "d.png"]
    assert job.summary.skipped == 2 and not (out / "sub" / ".x.png.faceanon-part").exists()


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "o" / "a.png"
    write_atomic(target, b"abc")
    assert target.read_bytes() == b"abc" and sorted(p.name for p in target.parent.iterdir()) == ["a.png"]

    def interrupted(fd):
        raise KeyboardInterrupt  # Ctrl-C after the bytes, before the rename

    monkeypatch.setattr("faceanon.run.runner.os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "o" / "b.png", b"x")
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.png"]


def test_assignments_parse_json_values_or_keep_text():
    assert parse_assignment("FaceAnonymize.seed=3") == ("FaceAnonymize", "seed", 3)
    assert parse_assignment("6.overrides=steps = 20") == ("6", "overrides", "steps = 20")
    assert parse_assignment('My title.keep="eyes"') == ("My title", "keep", "eyes")
    with pytest.raises(GraphError, match="NODE.INPUT=VALUE"):
        parse_assignment("seed=3")


INFO = {  # just enough /object_info for an API graph (inputs of the widget nodes)
    "LoadImage": {"input": {"required": {"image": [["x.png"], {"image_upload": True}]}}, "output": ["IMAGE", "MASK"]},
    "Blur": {"input": {"required": {"image": ["IMAGE"], "radius": ["INT", {"default": 1}]}}, "output": ["IMAGE"]},
    "FaceAnonSaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}},
                          "output": []},
    "FaceAnonPreviewImage": {"input": {"required": {"images": ["IMAGE"]}}, "output": []},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}, "output": []},
}
API = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
       "2": {"class_type": "Blur", "inputs": {"image": ["1", 0], "radius": 1}, "_meta": {"title": "soften"}},
       "3": {"class_type": "FaceAnonSaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "who/alice"}},
       "4": {"class_type": "FaceAnonPreviewImage", "inputs": {"images": ["1", 0]}}}


def test_plan_swaps_the_source_keeps_only_what_the_save_needs_and_overrides():
    p = plan(API, INFO, assignments=["soften.radius=4"])
    assert sorted(p.graph) == ["1", "2", "3"]  # the preview of the original is not run
    assert p.graph["1"]["class_type"] == "FaceAnonRunLoadImage" and (p.source_id, p.save_id) == ("1", "3")
    assert p.graph["2"]["inputs"]["radius"] == 4 and p.graph["3"]["inputs"]["filename_prefix"] == "faceanon_run"
    graph = p.for_item("/data/photo.png")
    assert graph["1"]["inputs"] == {"image": "/data/photo.png"} and p.graph["1"]["inputs"]["image"] == ""
    assert API["1"]["class_type"] == "LoadImage" and API["2"]["inputs"]["radius"] == 1  # input not mutated


def test_plan_refuses_what_cannot_run_headless():
    core = {**API, "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    with pytest.raises(GraphError, match="embed the prompt"):
        plan(core, INFO)
    two = {**API, "5": {"class_type": "FaceAnonSaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "y"}}}
    with pytest.raises(GraphError, match=r"2 save node\(s\).*--save-node"):
        plan(two, INFO)
    assert plan(two, INFO, save_node="5").save_id == "5"
    with pytest.raises(GraphError, match="has no widget 'sigma'"):
        plan(API, INFO, assignments=["Blur.sigma=2"])
    with pytest.raises(GraphError, match="no node with id, title or class 'Sharpen'"):
        plan(API, INFO, assignments=["Sharpen.amount=2"])
    with pytest.raises(GraphError, match="no CheckpointLoaderSimple"):
        plan(API, INFO, models={"checkpoint": "x.safetensors"})
    with pytest.raises(GraphError, match="neither UI format"):
        plan({"a": 1}, INFO)


def test_importing_the_runner_imports_no_host_torch_or_ray():
    code = ("import sys, faceanon.run, faceanon.run.cli, faceanon.run.ray_runner; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'comfy', 'nodes', "
            "'folder_paths'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_setup_errors_exit_2_and_say_what_to_fix(tmp_path):
    touch(tmp_path / "in" / "a.png")
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(API))
    env = {"PATH": "/usr/bin:/bin", "COMFYUI_PATH": str(tmp_path / "nowhere")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "faceanon.run", "--workflow", str(wf), *args], cwd=tmp_path,
                              env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True)

    r = run("--input", str(tmp_path / "in"), "--output", str(tmp_path / "in" / "out"))
    assert r.returncode == 2 and "inside the input folder" in r.stderr
    r = run("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"))
    assert r.returncode == 2 and "ComfyUI not found" in r.stderr and "COMFYUI_PATH" in r.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the host is there


def test_an_output_that_cannot_be_written_is_a_failed_item(tmp_path):
    from faceanon.run.comfy import Result

    touch(tmp_path / "in" / "sub" / "a.png")
    touch(tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    touch(out / "sub")  # a file where the output's folder should be
    job = Job(list_items(tmp_path / "in"), out)
    items = {i.rel: i for i in job.todo()}
    with job.manifest:
        rec = job.finish(items["sub/a.png"], Result("done", suffix=".png", data=b"png", faces=1, seconds=1.0))
        assert rec["status"] == "failed" and rec["output"] is None and "cannot write" in rec["error"]
        assert job.finish(items["b.png"], Result("done", suffix=".png", data=b"png", faces=1))["output"] == "b.png"
        assert job.finish(items["b.png"], Result("done", suffix=".png", data=b"other")) is None  # a retried task
    assert (out / "b.png").read_bytes() == b"png"
    assert [r["input"] for r in map(json.loads, job.manifest.path.read_text().splitlines())] == ["sub/a.png", "b.png"]
    assert job.summary.done == 1 and [rel for rel, _ in job.summary.failed] == ["sub/a.png"]
