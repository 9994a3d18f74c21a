"""FaceAnonymize (all-in-one) in a real ComfyUI graph: several faces with their own seeds and identities, pasted
back where they were; pixels outside the changed region bit-identical; kept regions kept; never fails open.
Faces come from the synthesized test insightface pack (magenta discs), the model is the random SD1.5 checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from dev.host import HostRunError, ensure_tiny_sd15_checkpoint
from tests.workflow_assets import face_photo, write_face_pack, write_tiny_faceid

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster on 2 cores

FAST = "resolution = 64\nsteps = 4\nmask_delay = 1"
FACES = [((70, 80), 64, 1), ((180, 160), 72, 2)]  # centre, diameter, texture seed


@pytest.fixture(scope="module")
def setup(host):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    write_face_pack(host.models_dir)
    write_tiny_faceid(host.models_dir / "ipadapter" / "tiny-faceid_sd15.bin")
    for name, faces in (("two_faces.png", FACES), ("no_face.png", [])):
        Image.fromarray(face_photo((256, 256), faces, 0)).save(host.input_dir / name)
    return ckpt


def graph(ckpt, image="two_faces.png", keep="nothing", if_no_face="error", seed=5, overrides=FAST):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image}},
        "3": {"class_type": "FaceAnonLoadFaceAnalysis", "inputs": {"model_pack": "buffalo_l", "provider": "CPU",
                                                                   "det_size": 640}},
        "4": {"class_type": "FaceAnonLoadIDAdapter", "inputs": {"adapter": "tiny-faceid_sd15.bin",
                                                                "lora": "embedded (from the adapter file)"}},
        "5": {"class_type": "FaceAnonymize", "inputs": {
            "image": ["2", 0], "model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2], "face_analysis": ["3", 0],
            "id_adapter": ["4", 0], "preset": "NullFace (SD1.5)", "seed": seed, "keep": keep,
            "if_no_face": if_no_face, "overrides": overrides, "threshold": 0.5, "min_face_size": 24}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }


def test_every_face_anonymized_with_its_own_seed_and_pasted_in_place(host, setup):
    anon = host.pack("nodes.anonymize")
    out = host.run(graph(setup))
    original = out["2"][0]
    result, changed, text = out["5"]
    ui = host.executor.history_result.get("outputs", {}).get("5", {})
    report = json.loads(ui["faceanon_report"][0]) if "faceanon_report" in ui else None
    assert "2 face(s) anonymized" in text
    assert text.count("ArcFace similarity to the original") == 2 and "similarity to the original n/a" not in text
    seeds = [anon.face_seed(5, k) for k in range(2)]
    assert seeds[0] != seeds[1] and all(str(s) in text for s in seeds)
    # the changed region covers each face and nothing far from them
    for (cx, cy), _, _ in FACES:
        assert changed[0, cy, cx] > 0.5
        assert float((result[0, cy - 5:cy + 5, cx - 5:cx + 5] - original[0, cy - 5:cy + 5, cx - 5:cx + 5])
                     .abs().max()) > 0
    assert float(changed[0, 5:25, 230:250].max()) == 0
    untouched = changed[0] == 0
    assert torch.equal(result[0][untouched], original[0][untouched])
    if report is not None:
        assert [f["seed"] for f in report["faces"]] == seeds


def test_kept_eyes_are_the_real_eyes(host, setup):
    from dev.onnx_packs import expected_kps

    out = host.run(graph(setup, keep="eyes"))
    original = out["2"][0]
    result, changed, _ = out["5"]
    for centre, diameter, _ in FACES:
        kps = expected_kps(centre, diameter).round().astype(int)
        for x, y in kps[:2]:  # both eyes: the photo's own pixels
            assert float(changed[0, y, x]) == 0
            assert torch.equal(result[0, y - 1:y + 2, x - 1:x + 2], original[0, y - 1:y + 2, x - 1:x + 2])
        nx, ny = kps[2]
        assert float(changed[0, ny + 4, nx]) > 0  # below the nose tip the face was anonymized


def test_no_face_is_an_error_or_flagged_never_silent(host, setup):
    with pytest.raises(HostRunError, match=r"no face found in image\(s\) 0 of the batch"):
        host.run(graph(setup, image="no_face.png"))
    out = host.run(graph(setup, image="no_face.png", if_no_face="flag and pass through"))
    result, changed, text = out["5"]
    assert torch.equal(result, out["2"][0]) and float(changed.max()) == 0
    assert "NOT anonymized" in text


def test_batch_mixing_faces_and_no_faces(host, setup):
    """Direct call on a batch: image 0 with two faces, image 1 without; flagged pass-through for image 1."""
    anon = host.pack("nodes.anonymize")
    out = host.run(graph(setup))
    model, clip, vae = out["1"]
    analysis, adapter = out["3"][0], out["4"][0]
    two = out["2"][0]
    none = host.run({"2": {"class_type": "LoadImage", "inputs": {"image": "no_face.png"}}}, all_nodes=True)["2"][0]
    batch = torch.cat([two, none])
    with torch.inference_mode():  # as ComfyUI runs nodes
        node_out = anon.FaceAnonymize.execute(batch, model, clip, vae, analysis, adapter, "NullFace (SD1.5)", 9,
                                              if_no_face="flag and pass through", overrides=FAST)
    result, changed, text = node_out.args
    assert torch.equal(result[1], batch[1]) and float(changed[1].max()) == 0
    assert "image 1: no face found, NOT anonymized" in text and "2 face(s) anonymized" in text
    assert float(changed[0].max()) > 0
