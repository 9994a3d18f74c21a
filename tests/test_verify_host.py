"""FaceAnonVerify in a real ComfyUI, on a synthesized insightface pack (dev/onnx_packs.py).

The synthesized detector finds synthetic faces (textured magenta discs) and its recognizer is a pixel-similarity
model: two discs of different texture score about 0.97, identical ones 1.0. The graph tests therefore use a
threshold of 0.99 and check the wiring (detection, embedding, threshold, actions, outputs, ui text); the gate's
behaviour on real photos is covered by tests/test_verify_core.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="the synthesized packs are written with the `onnx` package")
pytest.importorskip("insightface", reason="the face tools run insightface")

THRESHOLD = 0.99


def _disc_image(seed: int, size: int = 256) -> np.ndarray:
    from dev.onnx_packs import draw_face

    bg = np.full((size, size, 3), 0.5, np.float32)
    bg[..., 1] = np.linspace(0.2, 0.8, size)[None, :]
    return draw_face(bg, (size / 2, size / 2), 100, seed=seed)


@pytest.fixture(scope="module")
def env(host):
    from PIL import Image

    from dev.onnx_packs import write_pack

    pack = host.models_dir / "insightface" / "models" / "buffalo_l"
    if not (pack / "det_10g.onnx").exists():
        write_pack(pack, "buffalo_l")
    for name, seed in (("verify_orig.png", 1), ("verify_other.png", 2)):
        Image.fromarray((_disc_image(seed) * 255).round().astype(np.uint8)).save(host.input_dir / name)
    return host


def _graph(anonymized: str, on_failure: str, with_faces: bool = True) -> dict:
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "verify_orig.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": anonymized}},
        "3": {"class_type": "FaceAnonLoadFaceAnalysis",
              "inputs": {"model_pack": "buffalo_l", "provider": "CPU", "det_size": 640}},
        "5": {"class_type": "FaceAnonVerify",
              "inputs": {"face_analysis": ["3", 0], "original": ["1", 0], "anonymized": ["2", 0],
                         "threshold": THRESHOLD, "on_failure": on_failure, "detection_threshold": 0.5,
                         "min_face_size": 24}},
    }
    if with_faces:
        g["4"] = {"class_type": "FaceAnonDetectFaces",
                  "inputs": {"face_analysis": ["3", 0], "image": ["1", 0], "threshold": 0.5, "min_face_size": 24,
                             "max_faces": 0, "order": "largest first", "if_no_face": "error", "embeddings": True}}
        g["5"]["inputs"]["faces"] = ["4", 0]
    return g


def _registered(host):
    if "FaceAnonVerify" not in host.pack_node_ids:
        pytest.skip("FaceAnonVerify is not listed in nodes/extension.py yet (the lead adds nodes.verify)")


def test_direct_call_in_the_host_flags_unchanged_and_passes_another_face(env):
    from faceanon.faces import load_face_analysis

    mod = env.pack("nodes.verify")
    schema = mod.FaceAnonVerify.define_schema()
    assert schema.node_id == "FaceAnonVerify" and schema.category == "FaceAnon/privacy"
    assert mod.NODES == [mod.FaceAnonVerify]
    analysis = load_face_analysis("buffalo_l", [env.models_dir / "insightface"], provider="CPU")
    orig = torch.from_numpy(_disc_image(1))[None]
    other = torch.from_numpy(_disc_image(2))[None]

    out = mod.FaceAnonVerify.execute(analysis, orig, orig.clone(), None, THRESHOLD, "report only", 0.5, 24)
    image, mask, report = out.args
    data = json.loads(report)
    assert data["passed"] is False and data["faces"][0]["status"] == "fail"
    assert data["faces"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert mask.shape == (1, 256, 256) and mask[0, 128, 128] == 1.0 and mask[0, 5, 5] == 0.0
    assert torch.equal(image, orig)
    assert out.ui["text"][0].startswith("identity check: 0/1 face(s) pass")

    image, mask, report = mod.FaceAnonVerify.execute(analysis, orig, other, None, THRESHOLD, "report only", 0.5,
                                                     24).args
    data = json.loads(report)
    assert data["passed"] is True and 0.9 < data["faces"][0]["similarity"] < THRESHOLD
    assert mask.sum() == 0 and image is other


def test_graph_flags_unchanged_and_passes_another_face(env):
    _registered(env)
    fail = env.run(_graph("verify_orig.png", "report only"))
    data = json.loads(fail["5"][2])
    assert data["passed"] is False and data["n_failed"] == 1 and data["model"] == "buffalo_l/w600k_r50.onnx"
    ui = env.executor.history_result["outputs"]["5"]  # what the frontend receives
    assert "FAIL" in ui["text"][0] and ui["text"][0].startswith("identity check: 0/1")
    fields = json.loads(ui["faceanon_report"][0])  # the structured fields js/faceanon.js reads
    assert fields["passed"] is False and fields["summary"] == data["summary"]
    assert [f["status"] for f in fields["faces"]] == ["fail"] and "FAIL" in fields["faces"][0]["text"]

    ok = env.run(_graph("verify_other.png", "report only", with_faces=False))
    data = json.loads(ok["5"][2])
    assert data["passed"] is True and data["faces"][0]["found_in_output"] is True
    assert float(ok["5"][1].sum()) == 0.0


def test_graph_stop_with_error_and_blur_only_failing(env):
    _registered(env)
    from dev.host import HostRunError

    with pytest.raises(HostRunError, match=r"(?s)IdentityLeakError.*image 0, face 0: FAIL"):
        env.run(_graph("verify_orig.png", "stop with error"))
    out = env.run(_graph("verify_orig.png", "blur failing faces"))
    image, mask = out["5"][0], out["5"][1]
    orig = env.run(_graph("verify_other.png", "report only"))["1"][0]  # LoadImage of the original
    changed = (image != orig).any(dim=-1)
    assert changed.any() and not changed[mask == 0].any()
    assert json.loads(out["5"][2])["faces"][0]["repaired"] is True
