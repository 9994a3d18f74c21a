"""The shipped workflows (workflows/*.json) against a real ComfyUI with this pack, loaded in-process.

* They are up to date with scripts/build_workflows.py and the node schemas (widget order read from the schemas).
* Every node type is installed (`/object_info`), every link joins an output to an input of the same type at the
  right slots, every widget value is valid for its input (count, type, range, choices; model and image file names
  are the README's defaults), every workflow has a Note explaining it and saves through the metadata-free node.
* Every template opens ready: its Load Image names one of the pack's example photos (example_inputs/), which the
  pack copied into ComfyUI's input folder when it loaded (never over a user's file: tests/test_examples_core.py),
  and every template has its thumbnail (workflows/<stem>.jpg, what the template browser asks for).
* Converted to the API form (faceanon/workflow.ui_to_api: widget values named by the schema's widget order,
  frontend-only values and Note nodes dropped), each one runs. Model file names are swapped for stand-ins written
  here (tests/workflow_assets.py): a random SD1.5-layout checkpoint, a FaceID file for its layout, a synthesized
  insightface pack. **The two SDXL workflows run on these SD1.5-layout stand-ins as well**: that checks their
  wiring and settings, not SDXL itself. Steps and crop sizes are cut (preset overrides 'resolution = 64, steps = 3';
  Crop Faces size 64, Invert Latent steps 3) so each run takes seconds.
* Privacy: the runs get the UI workflow as `extra_pnginfo`, as the frontend sends it; every saved PNG has no text
  chunk at all (no "prompt", no "workflow"), and the only new files anywhere in ComfyUI's folders are the saved
  and previewed images: no inversion, no identity embedding is written. A control run shows core SaveImage does
  embed the prompt, so the check would catch it.
"""

from __future__ import annotations

import copy
import json
import struct
import uuid
from pathlib import Path

import pytest

from scripts.build_workflows import FILE_INPUTS, WORKFLOWS, WORKFLOWS_DIR, build_all, dumps
from dev.host import HostRunError, ensure_tiny_sd15_checkpoint
from faceanon.workflow import FRONTEND_ONLY_NODES, check_workflow, layout, object_info, ui_to_api
from tests.workflow_assets import STAND_IN_PHOTOS

pytest.importorskip("onnx", reason="the synthesized insightface pack is written with the `onnx` package")
pytest.importorskip("insightface", reason="the face nodes run insightface")

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster on 2 cores

STEMS = list(WORKFLOWS)
FAST_OVERRIDES = "resolution = 64\nsteps = 3\nmask_delay = 1"
TINY_FACEID = "faceanon_tiny_faceid_sd15.bin"


def load(stem: str) -> dict:
    return json.loads((WORKFLOWS_DIR / f"{stem}.json").read_text())


@pytest.fixture(scope="module")
def info(host):
    return object_info(host.nodes)


@pytest.fixture(scope="module")
def assets(host):
    from tests.workflow_assets import write_face_pack, write_photos, write_tiny_faceid

    ckpt = ensure_tiny_sd15_checkpoint(host)
    write_tiny_faceid(host.models_dir / "ipadapter" / TINY_FACEID)
    write_face_pack(host.models_dir)
    write_photos(host.input_dir)
    return ckpt


def png_text_chunks(path: Path) -> dict[str, bytes]:
    """Every ancillary text / metadata chunk of a PNG (tEXt, zTXt, iTXt, eXIf), read from the raw bytes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    pos, found = 8, {}
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            key = body.split(b"\0", 1)[0].decode("latin-1")
            found[key] = body
        elif kind == b"eXIf":
            found["eXIf"] = body
        pos += 12 + length
    return found


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def run_like_the_frontend(host, api: dict, workflow: dict) -> None:
    """Execute as the Queue button does: extra_pnginfo carries the UI workflow (what core SaveImage embeds)."""
    ok, err, outputs, node_errors = host.validate(api)
    if not ok or node_errors:
        raise HostRunError(f"graph did not validate: {err} {node_errors}")
    ex = host.executor
    ex.execute(api, str(uuid.uuid4()), {"extra_pnginfo": {"workflow": workflow}}, outputs)
    if not ex.success:
        errors = [m for m in ex.status_messages if m[0] == "execution_error"]
        detail = errors[-1][1] if errors else ex.status_messages
        if isinstance(detail, dict):
            raise HostRunError(f"{detail.get('node_type')}: {detail.get('exception_message')}\n"
                               + "".join(detail.get("traceback", [])))
        raise HostRunError(str(detail))


def fast_api(workflow: dict, info: dict, ckpt: str) -> dict:
    """The workflow's API form with stand-in model files and cut steps / sizes."""
    api = ui_to_api(workflow, info)
    for node in api.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = ckpt
        elif kind == "FaceAnonLoadIDAdapter":
            inputs["adapter"] = TINY_FACEID
        elif kind == "FaceAnonLoadFaceAnalysis":
            inputs["provider"] = "CPU"
        elif kind in ("FaceAnonymize", "FaceAnonAnonymizePeople"):
            inputs["overrides"] = FAST_OVERRIDES
        elif kind == "FaceAnonCropFaces":
            inputs["size"] = 64
        elif kind == "FaceAnonInvert":
            inputs["steps"] = 3
        elif kind == "FaceAnonIdentityGuider":
            inputs["mask_delay"] = min(inputs["mask_delay"], 1)
        elif kind == "LoadImage":
            inputs["image"] = STAND_IN_PHOTOS[inputs["image"]]
        elif kind == "LoadVideo":
            inputs["file"] = STAND_IN_PHOTOS[inputs["file"]]
    return api


# ---------------------------------------------------------------------------------------------------------------
def test_committed_workflows_are_built_from_the_current_schemas(info):
    built = build_all(info)
    on_disk = sorted(p.stem for p in WORKFLOWS_DIR.glob("*.json"))
    assert on_disk == sorted(built), "workflows/ holds files the build script does not make (or lacks some)"
    stale = [stem for stem, wf in built.items() if (WORKFLOWS_DIR / f"{stem}.json").read_text() != dumps(wf)]
    assert not stale, f"out of date, run `.venv/bin/python scripts/build_workflows.py`: {stale}"


@pytest.mark.parametrize("stem", STEMS)
def test_workflow_is_sound(info, stem):
    workflow = load(stem)
    files = {key: (lambda v, ok=names: v in ok) for key, names in FILE_INPUTS.items()}
    assert check_workflow(workflow, info, file_inputs=files) == []
    assert workflow["version"] == 0.4 and {"last_node_id", "last_link_id", "groups", "config", "extra"} <= set(workflow)
    types = [n["type"] for n in workflow["nodes"]]
    missing = sorted({t for t in types if t not in info and t not in FRONTEND_ONLY_NODES})
    assert not missing, f"not in /object_info: {missing}"
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and len(notes[0]["widgets_values"][0]) > 200, "one Note that explains the workflow"
    # the family's default model files
    family = WORKFLOWS[stem][1]
    ckpts = {n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple"}
    adapters = {n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "FaceAnonLoadIDAdapter"}
    expected = {"sd15": ({"v1-5-pruned-emaonly.safetensors"}, {"ip-adapter-faceid_sd15.bin"}),
                "sdxl": ({"sd_xl_base_1.0.safetensors"}, {"ip-adapter-faceid_sdxl.bin"})}[family]
    assert (ckpts, adapters) == expected
    # anonymized results leave only through the metadata-free save nodes; no core SaveImage / PreviewImage / SaveVideo
    assert {"FaceAnonSaveImage", "FaceAnonSaveVideo"} & set(types)
    assert not {"SaveImage", "PreviewImage", "SaveVideo", "SaveWEBM"} & set(types)


@pytest.mark.parametrize("stem", STEMS)
def test_template_opens_with_an_example_photo_and_has_a_thumbnail(host, stem):
    from PIL import Image

    from scripts.build_workflows import EXAMPLES_DIR

    nodes = load(stem)["nodes"]
    photos = [n["widgets_values"][0] for n in nodes if n["type"] == "LoadImage"]
    videos = [n["widgets_values"][0] for n in nodes if n["type"] == "LoadVideo"]
    assert photos + videos and set(photos + videos) <= set(STAND_IN_PHOTOS)
    for name in photos + videos:
        # the pack put it into the host's input folder at load time, byte for byte
        assert (host.input_dir / name).read_bytes() == (EXAMPLES_DIR / name).read_bytes()
    for name in photos:
        assert host.validate({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                              "2": {"class_type": "FaceAnonPreviewImage", "inputs": {"images": ["1", 0]}}})[0]
    with Image.open(WORKFLOWS_DIR / f"{stem}.jpg") as thumb:
        assert thumb.format == "JPEG" and thumb.size == (512, 512)


def test_converter_maps_widget_values_by_the_schema_order(info):
    """Spot checks of the UI -> API conversion on a known node (control_after_generate and upload dropped)."""
    workflow = load("faceanon_nullface_sd15_keep_eyes_mouth")
    api = ui_to_api(workflow, info)
    anon = next(n for n in api.values() if n["class_type"] == "FaceAnonymize")
    assert {k: v for k, v in anon["inputs"].items() if not isinstance(v, list)} == {
        "preset": "NullFace (SD1.5)", "seed": 0, "keep": "eyes + mouth", "if_no_face": "error", "overrides": "",
        "threshold": 0.5, "min_face_size": 24}
    ui_anon = next(n for n in workflow["nodes"] if n["type"] == "FaceAnonymize")
    assert ui_anon["widgets_values"][2] == "fixed"  # the seed's control_after_generate value, frontend only
    photo = next(n for n in api.values() if n["class_type"] == "LoadImage")
    assert photo["inputs"] == {"image": "faceanon_example_portrait.jpg"}
    assert not any(n["class_type"] == "Note" for n in api.values())
    sockets = [s.name for s in layout(info["FaceAnonymize"]).sockets]
    assert sockets == ["image", "model", "clip", "vae", "face_analysis", "id_adapter", "attribute_prompt"]


@pytest.mark.parametrize("stem", STEMS)
def test_workflow_runs_and_writes_only_plain_images(host, info, assets, stem):
    workflow = load(stem)
    api = fast_api(workflow, info, assets)
    before = snapshot(host.workdir)
    run_like_the_frontend(host, api, copy.deepcopy(workflow))
    after = snapshot(host.workdir)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k])
    saved = [k for k in new if k.startswith("output/faceanon/")]
    previews = [k for k in new if k.startswith("temp/faceanon_preview_")]
    saves = [n for n in api.values() if n["class_type"] in ("FaceAnonSaveImage", "FaceAnonSaveVideo")]
    assert len(saved) == len(saves), f"expected one saved image per save node, got {saved}"
    n_previews = sum(n["class_type"] == "FaceAnonPreviewImage" for n in api.values())
    assert len(previews) == n_previews
    assert all(k.endswith((".png", ".mp4")) for k in saved) and all(k.endswith(".png") for k in previews)
    assert sorted(saved + previews) == new, f"unexpected files written: {sorted(set(new) - set(saved + previews))}"
    assert not changed, f"files modified by the run: {changed}"
    for rel in saved + previews:
        if rel.endswith(".mp4"):
            from tests.video_clips import read_video

            tags = read_video(host.workdir / rel)["tags"]
            assert set(tags) <= {"major_brand", "minor_version", "compatible_brands"}, f"{rel} carries tags {tags}"
            continue
        chunks = png_text_chunks(host.workdir / rel)
        assert chunks == {}, f"{rel} carries metadata chunks {sorted(chunks)}"
    prefixes = {n["inputs"]["filename_prefix"].split("/")[-1] for n in saves}
    assert {Path(k).name.rsplit("_", 2)[0] for k in saved} == prefixes
    check_results(stem, api, host.outputs_of(api), host.workdir / saved[0])


def check_results(stem: str, api: dict, out: dict, saved: Path) -> None:
    """What each workflow must have done on the synthetic photos (one face in portrait.png, three in the group)."""
    from PIL import Image

    from tests.workflow_assets import GROUP_FACES, PORTRAIT_FACES

    def of(kind):
        return [out[i] for i, n in api.items() if n["class_type"] == kind]

    if of("LoadVideo"):
        check_video_results(stem, of, saved)
        return

    photo = next(n["inputs"]["image"] for n in api.values() if n["class_type"] == "LoadImage")
    n_faces = len(GROUP_FACES if photo == "group_photo.png" else PORTRAIT_FACES)
    original = of("LoadImage")[0][0]
    for image, changed, report in of("FaceAnonymize"):
        assert f"{n_faces} face(s) anonymized" in report and "NOT anonymized" not in report
        assert image.shape == original.shape and float(changed.amax()) > 0
        assert bool((image != original).any())
    for image, _, report in of("FaceAnonPasteFaces"):
        assert f"pasted {n_faces} face(s)" in report and bool((image != original).any())
    for _faces, _preview, _report, count in of("FaceAnonDetectFaces"):
        assert count == n_faces
    for _, _, report in of("FaceAnonVerify"):
        assert json.loads(report)["n_faces"] == n_faces
    with Image.open(saved) as img:
        width, height = img.size
    n_stitched = len(of("FaceAnonPasteFaces")) if stem.startswith("faceanon_attribute_variants") else 1
    assert (height, width) == (original.shape[1], n_stitched * original.shape[2] + (n_stitched - 1) * 16)


def check_video_results(stem: str, of, saved: Path) -> None:
    """The video workflows on `people_walking.mp4` (two people, tests/workflow_assets.py): same frames out, one
    track per person, the saved MP4 with the frame count, rate and audio of the source."""
    from tests.video_clips import read_video
    from tests.workflow_assets import VIDEO_FRAMES

    frames, audio, fps = of("GetVideoComponents")[0]
    assert frames.shape[0] == VIDEO_FRAMES and fps == 8.0
    tracks = of("FaceAnonTrackFaces")[0][0]
    assert len(tracks) == 2 and all(t.frames == tuple(range(VIDEO_FRAMES)) for t in tracks)
    image, changed, report = of("FaceAnonAnonymizePeople")[0]
    assert image.shape == frames.shape
    if "keep_reference" in stem:  # the reference person keeps his face in every frame (the other one may match
        # too with the test pack's coarse recognizer: the vote itself is tested in tests/test_video_host.py)
        assert f"EXEMPT (kept as is) in 0-{VIDEO_FRAMES - 1}" in report and "vote for reference 0" in report
    else:
        assert report.count(f"anonymized in 0-{VIDEO_FRAMES - 1}") == 2 and float(changed.amax()) > 0
        assert bool((image != frames).any())
    info = read_video(saved)
    assert info["frames"].shape[0] == VIDEO_FRAMES and info["fps"] == 8.0
    assert info["audio"]["channels"] == 2 and info["audio"]["sample_rate"] == audio["sample_rate"]


def test_core_save_image_would_embed_the_prompt(host, assets):
    """Control: the check above detects metadata. Core SaveImage writes "prompt" and "workflow" chunks (with the
    source image's file name), which is why the workflows use FaceAnonSaveImage."""
    api = {"1": {"class_type": "LoadImage", "inputs": {"image": "portrait.png"}},
           "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "control/core"}}}
    before = snapshot(host.output_dir)
    run_like_the_frontend(host, api, {"nodes": [], "note": "stand-in workflow"})
    new = sorted(set(snapshot(host.output_dir)) - set(before))
    assert len(new) == 1
    chunks = png_text_chunks(host.output_dir / new[0])
    assert {"prompt", "workflow"} <= set(chunks) and b"portrait.png" in chunks["prompt"]
    (host.output_dir / new[0]).unlink()


def test_metadata_free_nodes_on_a_batch(host, assets):
    """A batch of 2 through FaceAnonSaveImage and FaceAnonPreviewImage: two files each, no chunks, UI entries."""
    api = {"1": {"class_type": "LoadImage", "inputs": {"image": "portrait.png"}},
           "2": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["1", 0]}},
           "3": {"class_type": "FaceAnonSaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "batch/x"}},
           "4": {"class_type": "FaceAnonPreviewImage", "inputs": {"images": ["2", 0]}}}
    run_like_the_frontend(host, api, {"nodes": []})
    ui = host.executor.history_result["outputs"]
    saved, previewed = ui["3"]["images"], ui["4"]["images"]
    assert [e["type"] for e in saved] == ["output", "output"] and [e["subfolder"] for e in saved] == ["batch"] * 2
    assert [e["type"] for e in previewed] == ["temp", "temp"]
    for entry in saved + previewed:
        root = host.output_dir if entry["type"] == "output" else host.temp_dir
        path = root / entry["subfolder"] / entry["filename"]
        assert path.is_file() and png_text_chunks(path) == {}
    with pytest.raises(HostRunError, match="outside the output folder"):
        host.run({"1": api["1"], "3": {"class_type": "FaceAnonSaveImage",
                                       "inputs": {"images": ["1", 0], "filename_prefix": "../escape"}}})


def test_png_chunk_reader_sees_text_chunks(tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("prompt", "{}")
    info.add_itxt("workflow", "{}", zip=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "m.png", pnginfo=info)
    assert set(png_text_chunks(tmp_path / "m.png")) == {"prompt", "workflow"}
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    assert png_text_chunks(tmp_path / "plain.png") == {}


def test_docs_name_every_node_and_workflow(host):
    """docs/workflows.md (README-ready text) has a row for every node of the pack and every shipped workflow."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "workflows.md").read_text()
    missing = sorted(n for n in host.pack_node_ids if f"`{n}`" not in text)
    assert not missing, f"nodes missing from docs/workflows.md: {missing}"
    assert all(f"`{stem}`" in text for stem in STEMS)


def test_checker_catches_what_users_would_meet(info):
    """The soundness check is not vacuous: a shifted widget, a bad value, a wrong link and a missing node fail."""
    base = load("faceanon_modular_nullface_sd15")

    def problems(mutate):
        wf = copy.deepcopy(base)
        mutate(wf)
        return check_workflow(wf, info, file_inputs={k: (lambda v: True) for k in FILE_INPUTS})

    def node(wf, kind):
        return next(n for n in wf["nodes"] if n["type"] == kind)

    assert problems(lambda wf: None) == []
    assert any("widget values for" in p for p in problems(lambda wf: node(wf, "FaceAnonInvert")["widgets_values"]
                                                          .pop(2)))  # shifted by one
    assert any("not one of" in p for p in problems(lambda wf: node(wf, "FaceAnonInvert")["widgets_values"]
                                                   .__setitem__(0, "euler")))
    assert any("outside" in p for p in problems(lambda wf: node(wf, "FaceAnonInvert")["widgets_values"]
                                                .__setitem__(1, 0)))
    assert any("control_after_generate" in p for p in problems(
        lambda wf: node(wf, "FaceAnonInvert")["widgets_values"].__setitem__(6, "sometimes")))

    def wrong_link(wf):  # the crops IMAGE into the guider's mask input
        link = next(lk for lk in wf["links"] if lk[3] == node(wf, "FaceAnonIdentityGuider")["id"] and lk[5] == "MASK")
        crop = node(wf, "FaceAnonCropFaces")
        link[1], link[2], link[5] = crop["id"], 0, "IMAGE"

    assert any("wants MASK, gets IMAGE" in p for p in problems(wrong_link))
    assert any("not installed" in p for p in problems(lambda wf: node(wf, "VAEDecode").__setitem__("type", "NoSuch")))
