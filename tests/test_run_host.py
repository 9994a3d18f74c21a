"""The headless runner (python -m faceanon.run) on a real ComfyUI with the tiny stand-in models.

A folder of 10 synthetic photos: 6 with a face, one more in a subfolder, 2 without a face and a corrupt file. The
shipped NullFace workflow (UI format, converted by the pack's converter) runs with steps and sizes cut by --set.
In-process runs reuse the session's ComfyUI (the runner boots none when one is loaded); the Ctrl-C test and the
Ray test start their own processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dev.host import ensure_tiny_sd15_checkpoint
from tests.test_workflows_host import FAST_OVERRIDES, TINY_FACEID, fast_api, png_text_chunks, snapshot

pytest.importorskip("onnx", reason="the synthesized insightface pack is written with the `onnx` package")
pytest.importorskip("insightface", reason="the face nodes run insightface")

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = REPO_ROOT / "workflows" / "faceanon_nullface_sd15_keep_eyes_mouth.json"
FACES = {"p0.png": ((64, 64), 72, 3), "p1.png": ((60, 70), 64, 4), "p2.jpg": ((70, 60), 80, 5),
         "p3.png": ((64, 64), 60, 6), "p4.webp": ((64, 70), 70, 7), "p5.png": ((66, 62), 76, 8),
         "sub/p6.png": ((64, 64), 68, 9)}
NO_FACE = ("empty0.png", "empty1.jpg")
CORRUPT = "broken.png"


@pytest.fixture(scope="module")
def models(host):
    from tests.workflow_assets import write_face_pack, write_tiny_faceid

    ckpt = ensure_tiny_sd15_checkpoint(host)
    write_tiny_faceid(host.models_dir / "ipadapter" / TINY_FACEID)
    write_face_pack(host.models_dir)
    return ckpt


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from PIL import Image

    from tests.workflow_assets import face_photo

    root = tmp_path_factory.mktemp("photos")
    for k, (rel, face) in enumerate(FACES.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        kw = {"quality": 95} if rel.endswith((".jpg", ".webp")) else {}
        Image.fromarray(face_photo((128, 128), [face], k)).save(root / rel, **kw)
    for k, rel in enumerate(NO_FACE):
        Image.fromarray(face_photo((128, 128), [], 10 + k)).save(root / rel)
    (root / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    return root


def cli_args(host, ckpt: str, inp: Path, out: Path, *extra: str) -> list[str]:
    return ["--workflow", str(WORKFLOW), "--input", str(inp), "--output", str(out),
            "--models-dir", str(host.models_dir), "--checkpoint", ckpt, "--id-adapter", TINY_FACEID,
            "--set", "FaceAnonLoadFaceAnalysis.provider=CPU",
            "--set", f"FaceAnonymize.overrides={json.dumps(FAST_OVERRIDES)}",
            "--threads", "1", "--no-progress", *extra]


def python_path() -> str:
    """This repository first, then the caller's PYTHONPATH (scripts/test.sh adds a host's own site folder)."""
    return os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and p.name != "faceanon_manifest.jsonl"}


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def embedded(host, models, photos, tmp_path_factory):
    """One in-process run over the folder, with the network closed and every folder watched."""
    from faceanon.run.cli import main

    out = tmp_path_factory.mktemp("run") / "out"
    originals = digest(photos)
    host_before = snapshot(host.workdir)
    staging_before = set(Path(tempfile.gettempdir()).glob("faceanon-run-*"))
    real_connect = socket.socket.connect

    def no_network(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"the runner opened a network connection to {address}")
        return real_connect(sock, address)

    socket.socket.connect = no_network
    try:
        code = main(cli_args(host, models, photos, out))
    finally:
        socket.socket.connect = real_connect
    return {"code": code, "out": out, "records": read_manifest(out / "faceanon_manifest.jsonl"),
            "files": outputs(out), "originals": originals, "host_before": host_before,
            "staging_before": staging_before}


def test_writes_exactly_the_anonymized_images_and_records_every_item(host, photos, embedded):
    assert embedded["code"] == 1, "a corrupt file failed: the exit status says so"
    expected = {str(Path(rel).with_suffix(".png")) for rel in FACES}
    assert set(embedded["files"]) == expected
    for rel, data in embedded["files"].items():
        path = embedded["out"] / rel
        assert png_text_chunks(path) == {}, f"{rel} carries metadata"
        original = next(photos / r for r in FACES if str(Path(r).with_suffix(".png")) == rel)
        assert data != original.read_bytes()
    by_input = {r["input"]: r for r in embedded["records"]}
    assert len(embedded["records"]) == len(by_input) == len(FACES) + len(NO_FACE) + 1
    for rel in FACES:
        r = by_input[rel]
        assert (r["status"], r["output"], r["faces"], r["error"]) == ("done", str(Path(rel).with_suffix(".png")), 1,
                                                                      None)
        assert -1 <= r["similarity_min"] == r["similarity_max"] <= 1 and r["seconds"] > 0
    for rel in NO_FACE:
        assert by_input[rel]["status"] == "no_face" and by_input[rel]["output"] is None
        assert "no face found" in by_input[rel]["error"]
    broken = by_input[CORRUPT]
    assert broken["status"] == "failed" and broken["output"] is None
    assert broken["error"].startswith("FaceAnonRunLoadImage (node 3): ")  # PIL: not an image / truncated


def test_nothing_is_written_anywhere_else(host, photos, embedded):
    assert digest(photos) == embedded["originals"], "the originals were changed or files were added next to them"
    assert snapshot(host.workdir) == embedded["host_before"], "ComfyUI's input / output / temp folders changed"
    assert set(Path(tempfile.gettempdir()).glob("faceanon-run-*")) == embedded["staging_before"]
    leftovers = [p for p in embedded["out"].rglob("*") if p.name.startswith(".")]
    assert not leftovers


def test_output_equals_the_same_workflow_run_as_a_graph(host, models, photos, embedded):
    """Byte for byte: the UI workflow converted and run by ComfyUI with LoadImage and the pack's save node."""
    from faceanon.workflow import object_info

    api = fast_api(json.loads(WORKFLOW.read_text()), object_info(host.nodes), models)  # the tests' cut settings
    source = next(n for n in api.values() if n["class_type"] == "LoadImage")
    save = next(n for n in api.values() if n["class_type"] == "FaceAnonSaveImage")
    shutil.copyfile(photos / "p2.jpg", host.input_dir / "runner_p2.jpg")  # the test's copy, not the runner's
    source["inputs"]["image"] = "runner_p2.jpg"
    save["inputs"]["filename_prefix"] = "runner_compare/p2"
    try:
        host.run(api)
        saved = list((host.output_dir / "runner_compare").glob("p2_*.png"))
        assert len(saved) == 1
        assert saved[0].read_bytes() == embedded["files"]["p2.png"]
    finally:
        (host.input_dir / "runner_p2.jpg").unlink()
        shutil.rmtree(host.output_dir / "runner_compare", ignore_errors=True)


def test_a_rerun_only_retries_what_failed(host, models, photos, embedded):
    from faceanon.run.cli import main

    out = embedded["out"]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert main(cli_args(host, models, photos, out)) == 1
    records = read_manifest(out / "faceanon_manifest.jsonl")
    assert records[:len(embedded["records"])] == embedded["records"]
    assert [r["input"] for r in records[len(embedded["records"]):]] == [CORRUPT]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps


def test_ctrl_c_leaves_a_consistent_manifest_and_a_rerun_finishes_the_rest(host, models, photos, embedded,
                                                                          tmp_path):
    """A real SIGINT to `python -m faceanon.run` after two items of a list file; then the rest, in-process."""
    from faceanon.run.cli import main

    subset = ["p0.png", "empty0.png", "p1.png", "sub/p6.png"]
    todo = tmp_path / "todo.txt"
    todo.write_text("".join(f"{photos / rel}\n" for rel in subset))
    out = tmp_path / "out"
    manifest = out / "faceanon_manifest.jsonl"
    env = {**os.environ, "PYTHONPATH": python_path(), "COMFYUI_PATH": str(host.path)}
    proc = subprocess.Popen([sys.executable, "-m", "faceanon.run", *cli_args(host, models, todo, out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_text().count("\n") >= 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted: rerun the same command" in err
    first = read_manifest(manifest)  # every line parses
    assert 2 <= len(first) < len(subset)
    done_first = {r["output"] for r in first if r["status"] == "done"}
    assert set(outputs(out)) == done_first, "an output without its record, or a record without its output"
    stamps = {o: (out / o).stat().st_mtime_ns for o in done_first}

    assert main(cli_args(host, models, todo, out)) == 0
    records = read_manifest(manifest)
    assert records[:len(first)] == first
    assert sorted(r["input"] for r in records) == sorted(subset), "an item missing or done twice"
    assert {o: (out / o).stat().st_mtime_ns for o in done_first} == stamps, "finished items were redone"
    assert outputs(out) == {k: v for k, v in embedded["files"].items() if k in {"p0.png", "p1.png", "sub/p6.png"}}


@pytest.mark.ray
def test_ray_with_two_actors_one_killed_gives_the_embedded_outputs_and_manifest(host, models, photos, embedded,
                                                                               tmp_path):
    """A private local Ray cluster (127.0.0.1, 2 CPU actors); one actor is SIGKILLed after the first result: Ray
    restarts it and redoes its item; every item is recorded once, with the embedded run's bytes and fields."""
    pytest.importorskip("ray.data", reason="the Ray runner needs `ray[data]` (requirements-ray.txt)")
    import psutil

    subset = ["p2.jpg", "p3.png", "p4.webp", "empty1.jpg", CORRUPT]
    todo = tmp_path / "todo.txt"
    todo.write_text("".join(f"{photos / rel}\n" for rel in subset))
    out = tmp_path / "out"
    manifest = out / "faceanon_manifest.jsonl"
    env = {**os.environ, "PYTHONPATH": python_path(), "COMFYUI_PATH": str(host.path), "RAY_USAGE_STATS_ENABLED": "0"}
    args = [*cli_args(host, models, todo, out), "--ray", "local", "--workers", "2", "--object-store-mb", "100"]
    proc = subprocess.Popen([sys.executable, "-m", "faceanon.run", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    killed, lines_at_kill = None, None
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None and killed is None:
            if manifest.exists() and manifest.read_text().count("\n") >= 1:
                actors = [p for p in psutil.Process(proc.pid).children(recursive=True)
                          if (p.cmdline() or [""])[0].startswith("ray::MapWorker")]
                if actors:
                    lines_at_kill = manifest.read_text().count("\n")
                    actors[0].kill()
                    killed = actors[0].pid
            time.sleep(0.2)
        _, err = proc.communicate(timeout=max(30, deadline - time.monotonic()))
    finally:
        proc.kill()
    assert killed is not None and lines_at_kill < len(subset), "no actor was killed while items were left"
    assert proc.returncode == 1, err[-3000:]  # the corrupt file
    records = read_manifest(manifest)
    assert sorted(r["input"] for r in records) == sorted(subset), "an item missing or recorded twice"
    expected = {r["input"]: r for r in embedded["records"] if r["input"] in subset}

    def fields(r):
        return {k: v for k, v in r.items() if k != "seconds"}

    assert {r["input"]: fields(r) for r in records} == {k: fields(r) for k, r in expected.items()}
    assert outputs(out) == {r["output"]: embedded["files"][r["output"]] for r in expected.values() if r["output"]}


def write_clip(path: Path, frames: int = 4) -> None:
    """A short MP4 (no audio) of a synthetic face drifting to the right."""
    import av

    from tests.workflow_assets import face_photo

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(face_photo((128, 128), [((56 + 4 * k, 64), 72, 3)], 0), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_a_video_is_one_item(host, models, tmp_path):
    """Core LoadVideo (swapped for the runner's path reader) -> frames -> FaceAnonymize -> CreateVideo ->
    FaceAnonSaveVideo: one MP4 for the clip, recorded once. Without the pack's video save node (a checkout before
    it), the frames go to FaceAnonSaveImage instead: 4 files for one item, which the runner refuses whole."""
    import av

    from faceanon.run.cli import main

    clip = tmp_path / "clips" / "walk.mp4"
    clip.parent.mkdir()
    write_clip(clip)
    graph = {"1": {"class_type": "LoadVideo", "inputs": {"file": "walk.mp4"}},
             "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
             "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
             "4": {"class_type": "FaceAnonLoadFaceAnalysis",
                   "inputs": {"model_pack": "buffalo_l", "provider": "auto", "det_size": 640}},
             "5": {"class_type": "FaceAnonLoadIDAdapter",
                   "inputs": {"adapter": "ip-adapter-faceid_sd15.bin", "lora": "embedded (from the adapter file)"}},
             "6": {"class_type": "FaceAnonymize",
                   "inputs": {"image": ["2", 0], "model": ["3", 0], "clip": ["3", 1], "vae": ["3", 2],
                              "face_analysis": ["4", 0], "id_adapter": ["5", 0], "preset": "NullFace (SD1.5)",
                              "seed": 0, "keep": "nothing", "if_no_face": "error", "overrides": "",
                              "threshold": 0.5, "min_face_size": 24}},
             "7": {"class_type": "CreateVideo", "inputs": {"images": ["6", 0], "fps": ["2", 2]}},
             "8": {"class_type": "FaceAnonSaveVideo", "inputs": {"video": ["7", 0], "filename_prefix": "v", "crf": 19}}}
    has_video_save = "FaceAnonSaveVideo" in host.nodes.NODE_CLASS_MAPPINGS
    if not has_video_save:
        del graph["7"]
        graph["8"] = {"class_type": "FaceAnonSaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "v"}}
    wf = tmp_path / "video_api.json"
    wf.write_text(json.dumps(graph))
    out = tmp_path / "out"
    args = cli_args(host, models, clip, out)
    args[args.index("--workflow") + 1] = str(wf)
    code = main(args)
    (record,) = read_manifest(out / "faceanon_manifest.jsonl")
    assert record["input"] == "walk.mp4" and record["faces"] == 4  # one face a frame
    if not has_video_save:
        assert code == 1 and record["status"] == "failed" and "wrote 4 files for one input" in record["error"]
        assert outputs(out) == {}
        return
    assert code == 0 and (record["output"], record["status"]) == ("walk.mp4", "done")
    assert set(outputs(out)) == {"walk.mp4"}
    with av.open(str(out / "walk.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
