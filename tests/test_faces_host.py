"""The face nodes inside a real ComfyUI (in-process): registered, wired in API-format graphs, model folders from
models/insightface and extra paths, errors that say what to do, interruption honoured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dev.host import HostRunError
from dev.onnx_packs import draw_face, write_pack

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

FACE_NODES = ["FaceAnonLoadFaceAnalysis", "FaceAnonDetectFaces", "FaceAnonFaceIdentity", "FaceAnonCropFaces",
              "FaceAnonPasteFaces", "FaceAnonRegionMask"]
FACES = [((90, 100), 80, 1), ((230, 170), 100, 2)]


@pytest.fixture(scope="module")
def setup(host):
    write_pack(host.models_dir / "insightface" / "models" / "buffalo_l", "buffalo_l")
    rng = np.random.default_rng(1)
    base = np.clip(0.5 + 0.08 * rng.standard_normal((240, 320, 3)), 0, 1).astype(np.float32)
    img = base
    for c, d, s in FACES:
        img = draw_face(img, c, d, s)
    for name, arr in (("faces_two.png", img), ("faces_none.png", base)):
        Image.fromarray((arr * 255).round().astype(np.uint8)).save(host.input_dir / name)
    return host


def load(image):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "FaceAnonLoadFaceAnalysis",
              "inputs": {"model_pack": "buffalo_l", "provider": "auto", "det_size": 640}},
    }


def detect(if_no_face="error", **kw):
    inputs = {"face_analysis": ["2", 0], "image": ["1", 0], "threshold": 0.5, "min_face_size": 24, "max_faces": 0,
              "order": "left to right", "if_no_face": if_no_face, "embeddings": True}
    inputs.update(kw)
    return {"3": {"class_type": "FaceAnonDetectFaces", "inputs": inputs}}


def test_nodes_are_registered(host):
    assert set(FACE_NODES) <= host.pack_node_ids
    for node_id in FACE_NODES:
        cls = host.nodes.NODE_CLASS_MAPPINGS[node_id]
        assert cls.__name__ == node_id and cls.CATEGORY == "FaceAnon/faces"


def test_detect_identity_crop_region_paste_graph(setup):
    host = setup
    g = load("faces_two.png") | detect() | {
        "4": {"class_type": "FaceAnonFaceIdentity",
              "inputs": {"faces": ["3", 0], "select": "largest", "index": 0, "combine": "average"}},
        "5": {"class_type": "FaceAnonCropFaces",
              "inputs": {"image": ["1", 0], "faces": ["3", 0], "size": 256, "margin": 1.0, "padding": "reflection"}},
        "6": {"class_type": "FaceAnonRegionMask",
              "inputs": {"faces": ["3", 0], "face": False, "eyes": True, "brows": False, "nose": False, "mouth": True,
                         "mode": "keep", "dilation": 4, "feather": 2.0, "coordinates": "crop",
                         "face_crops": ["5", 1]}},
        "7": {"class_type": "FaceAnonPasteFaces",
              "inputs": {"image": ["1", 0], "crops": ["5", 0], "face_crops": ["5", 1], "feather": 8.0,
                         "color_match": "mean", "limit_to_face": True, "mask": ["6", 0], "mask_space": "crop"}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["3", 1]}},
    }
    assert host.validate(g)[0]  # the graph validates as a whole (socket types match)
    out = host.run(g, all_nodes=True)
    image = out["1"][0]
    faces, preview, report, count = out["3"]
    assert count == 2 and len(faces) == 2 and "image 0: 2 face(s)" in report
    for f, (c, d, _) in zip(faces, FACES, strict=True):
        assert abs(f.center[0] - c[0]) < 2 and abs(f.size - d) < 3
    assert preview.shape == image.shape and not torch.equal(preview, image)
    identity, id_report = out["4"]
    assert identity.embeddings.shape == (1, 512) and "mean of 1" in id_report
    np.testing.assert_allclose(identity.embeddings[0].numpy(), faces[1].embedding, atol=1e-6)  # the larger face
    crops, info, masks = out["5"]
    assert crops.shape == (2, 256, 256, 3) and masks.shape == (2, 256, 256) and len(info) == 2
    keep = out["6"][0]
    assert keep.shape == (2, 256, 256) and float(keep.min()) == 0.0 and float(keep.max()) == 1.0
    pasted, alpha, paste_report = out["7"]
    changed = alpha > 0
    assert changed.sum() > 500 and "pasted 2 face(s)" in paste_report
    assert float((pasted - image).abs().amax(-1)[changed].max()) <= 1 / 255
    assert torch.equal(pasted[~changed], image[~changed])


def test_no_face_is_an_error_or_flagged(setup):
    host = setup
    with pytest.raises(HostRunError) as e:
        host.run(load("faces_none.png") | detect() | {
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["3", 1]}}})
    assert "no face found in image(s) 0" in str(e.value)
    g = load("faces_none.png") | detect("flag and pass through") | {
        "5": {"class_type": "FaceAnonCropFaces",
              "inputs": {"image": ["1", 0], "faces": ["3", 0], "size": 128, "margin": 1.0, "padding": "reflection"}},
        "7": {"class_type": "FaceAnonPasteFaces",
              "inputs": {"image": ["1", 0], "crops": ["5", 0], "face_crops": ["5", 1], "feather": 8.0,
                         "color_match": "mean", "limit_to_face": True, "mask_space": "auto"}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["3", 1]}},
    }
    out = host.run(g)
    faces, preview, report, count = out["3"]
    assert count == 0 and faces.missing == (0,) and report.startswith("WARNING: no face found")
    fields = json.loads(host.executor.history_result["outputs"]["3"]["faceanon_report"][0])  # read by the js
    assert fields == {"n_faces": 0, "batch_size": 1, "images_without_faces": [0]}
    assert out["5"][0].shape == (1, 128, 128, 3)  # a placeholder keeps the graph running
    pasted, alpha, paste_report = out["7"]
    assert torch.equal(pasted, out["1"][0]) and not alpha.any()
    assert "image(s) 0 had no face and are returned NOT anonymized" in paste_report


def test_missing_pack_error_names_files_and_folder(setup):
    host = setup
    g = {"2": {"class_type": "FaceAnonLoadFaceAnalysis",
               "inputs": {"model_pack": "antelopev2", "provider": "auto", "det_size": 640}}}
    with pytest.raises(HostRunError) as e:
        host.run(g, all_nodes=True)
    msg = str(e.value)
    assert "scrfd_10g_bnkps.onnx" in msg and "glintr100.onnx" in msg
    assert str(host.models_dir / "insightface" / "models" / "antelopev2") in msg


def test_pack_from_an_extra_model_path(setup, tmp_path):
    import folder_paths

    host = setup
    extra = tmp_path / "elsewhere" / "insightface"
    write_pack(extra / "models" / "antelopev2", "antelopev2")
    folder_paths.add_model_folder_path("insightface", str(extra))  # what extra_model_paths.yaml does
    g = {"2": {"class_type": "FaceAnonLoadFaceAnalysis",
               "inputs": {"model_pack": "antelopev2", "provider": "CPU", "det_size": 320}}}
    analysis = host.run(g, all_nodes=True)["2"][0]
    assert analysis.folder == extra / "models" / "antelopev2" and analysis.det_size == 320


def test_detection_honours_cancel(setup):
    import comfy.model_management

    host = setup
    nodes_faces = host.pack("nodes.faces")
    analysis = host.run({"2": load("faces_two.png")["2"]}, all_nodes=True)["2"][0]
    image = torch.from_numpy(np.array(Image.open(host.input_dir / "faces_two.png"))).float().div(255)[None]
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            nodes_faces.FaceAnonDetectFaces.execute(analysis, image.expand(3, -1, -1, -1))
    finally:
        comfy.model_management.interrupt_current_processing(False)
    out = nodes_faces.FaceAnonDetectFaces.execute(analysis, image)
    assert len(out.result[0]) == 2
