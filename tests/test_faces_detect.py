"""Face detection, identity and model loading with real insightface + onnxruntime on synthesized packs.

The packs (dev/onnx_packs.py) mirror buffalo_l / antelopev2 file names and signatures; their detector finds
"synthetic faces" (textured magenta discs) so that every expectation here is exact.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("insightface")

from faceanon import faces as face_api  # noqa: E402
from faceanon.faces import detection, loading, runtime  # noqa: E402
from dev.onnx_packs import PACK_FILES, draw_face, expected_kps, write_pack  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

BG = 0.42


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    write_pack(root / "models" / "buffalo_l", "buffalo_l")
    write_pack(root / "models" / "antelopev2", "antelopev2")
    return root


@pytest.fixture(scope="module")
def analysis(pack_root):
    return face_api.load_face_analysis("buffalo_l", [pack_root])


def scene(h, w, specs, bg=BG):
    """[H, W, 3] float image with synthetic faces (center, diameter, seed)."""
    img = np.full((h, w, 3), bg, np.float32)
    for c, d, s in specs:
        img = draw_face(img, c, d, s)
    return img


def batch(*imgs):
    return torch.from_numpy(np.stack(imgs))


def match(faces, specs):
    """For each spec, the detected face whose box centre is nearest; asserts one-to-one."""
    out = []
    for c, _, _ in specs:
        dists = [np.hypot(f.center[0] - c[0], f.center[1] - c[1]) for f in faces]
        out.append(faces[int(np.argmin(dists))])
    assert len({id(f) for f in out}) == len(specs)
    return out


# ---------------------------------------------------------------------------------------------------------------
# packs and loading
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["buffalo_l", "antelopev2"])
def test_synthesized_packs_route_like_the_real_ones(pack_root, name):
    from insightface.model_zoo import get_model

    expected = {"detector": "detection", "recognizer": "recognition", "landmark_2d": "landmark_2d_106",
                "landmark_3d": "landmark_3d_68", "genderage": "genderage"}
    for role, fname in PACK_FILES[name].items():
        m = get_model(str(pack_root / "models" / name / fname), providers=["CPUExecutionProvider"])
        assert m.taskname == expected[role], fname
    det = get_model(str(pack_root / "models" / name / PACK_FILES[name]["detector"]), providers=["CPUExecutionProvider"])
    assert det.use_kps and det.fmc == 3 and det._num_anchors == 2


def test_load_both_packs_and_describe(pack_root, analysis):
    assert analysis.active_providers[-1] == "CPUExecutionProvider"
    assert analysis.files["detector"].name == "det_10g.onnx"
    assert "w600k_r50.onnx" in analysis.describe()
    ante = face_api.load_face_analysis("antelopev2", [pack_root], provider="CPU")
    assert ante.embedding_model == "antelopev2/glintr100.onnx"
    assert face_api.list_packs([pack_root])[:2] == ["buffalo_l", "antelopev2"]


def test_custom_pack_is_routed_by_shape(pack_root, tmp_path):
    d = tmp_path / "models" / "my_pack"
    d.mkdir(parents=True)
    for f in ("det_10g.onnx", "w600k_r50.onnx"):
        shutil.copy(pack_root / "models" / "buffalo_l" / f, d / f"renamed_{f}")
    a = face_api.load_face_analysis("my_pack", [tmp_path])
    assert a.files["detector"].name == "renamed_det_10g.onnx" and a.landmark is None
    assert "my_pack" in face_api.list_packs([tmp_path])


def test_missing_pack_names_pack_files_folder_and_source(tmp_path):
    with pytest.raises(face_api.FaceModelError) as e:
        face_api.load_face_analysis("antelopev2", [tmp_path / "insightface"])
    msg = str(e.value)
    for needed in ("'antelopev2' was not found", "scrfd_10g_bnkps.onnx", "glintr100.onnx", "2d106det.onnx",
                   "1k3d68.onnx", "genderage.onnx", str(tmp_path / "insightface" / "models" / "antelopev2"),
                   "extra_model_paths.yaml", "github.com/deepinsight/insightface", "non-commercial"):
        assert needed in msg, needed


def test_missing_file_is_named(pack_root, tmp_path):
    d = write_pack(tmp_path / "models" / "buffalo_l", "buffalo_l", skip=("recognizer",))
    with pytest.raises(face_api.FaceModelError) as e:
        face_api.load_face_analysis("buffalo_l", [tmp_path])
    msg = str(e.value)
    assert "incomplete: missing w600k_r50.onnx" in msg and str(d) in msg and "det_10g.onnx" in msg


def test_corrupt_file_is_named(pack_root, tmp_path):
    d = write_pack(tmp_path / "models" / "buffalo_l", "buffalo_l")
    (d / "det_10g.onnx").write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(face_api.FaceModelError) as e:
        face_api.load_face_analysis("buffalo_l", [tmp_path])
    assert "det_10g.onnx" in str(e.value) and "corrupt" in str(e.value)
    # a valid ONNX file in the wrong role is caught too
    shutil.copy(d / "2d106det.onnx", d / "det_10g.onnx")
    with pytest.raises(face_api.FaceModelError, match="det_10g.onnx of face model pack 'buffalo_l' is not a detection"):
        face_api.load_face_analysis("buffalo_l", [tmp_path])


def test_nested_pack_folder_is_explained(pack_root, tmp_path):
    write_pack(tmp_path / "models" / "antelopev2" / "antelopev2", "antelopev2")
    with pytest.raises(face_api.FaceModelError, match="nested one folder too deep"):
        face_api.load_face_analysis("antelopev2", [tmp_path])


def test_provider_choice():
    cpu = "CPUExecutionProvider"
    assert face_api.choose_providers("auto", [cpu]) == [cpu]
    assert face_api.choose_providers("auto", ["CoreMLExecutionProvider", "CUDAExecutionProvider", cpu]) == \
        ["CUDAExecutionProvider", cpu]
    assert face_api.choose_providers("auto", ["DmlExecutionProvider", cpu]) == ["DmlExecutionProvider", cpu]
    assert face_api.choose_providers("auto", ["ROCMExecutionProvider", "DmlExecutionProvider", cpu])[0] == \
        "ROCMExecutionProvider"
    assert face_api.choose_providers("auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider", cpu])[0] == \
        "CUDAExecutionProvider"
    assert face_api.choose_providers("CPU", ["CUDAExecutionProvider", cpu]) == [cpu]
    with pytest.raises(face_api.FaceModelError, match="onnxruntime-gpu"):
        face_api.choose_providers("CUDA", [cpu])


def test_side_by_side_onnxruntime_is_detected_and_explained(pack_root, monkeypatch):
    dists = [("onnxruntime", "1.20.1"), ("onnxruntime-gpu", "1.20.1")]
    msg = face_api.runtime_conflict(dists)
    assert "onnxruntime 1.20.1, onnxruntime-gpu 1.20.1" in msg
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in msg and "pip install onnxruntime-gpu" in msg
    assert face_api.runtime_conflict([("onnxruntime", "1.20.1")]) is None
    monkeypatch.setattr(runtime, "onnxruntime_distributions", lambda: dists)  # choose_providers' lookup
    monkeypatch.setattr(loading, "onnxruntime_distributions", lambda: dists)  # load_face_analysis' lookup
    a = face_api.load_face_analysis("buffalo_l", [pack_root])
    assert a.warnings and "side by side" in a.describe()
    with pytest.raises(face_api.FaceModelError, match="side by side"):
        face_api.load_face_analysis("buffalo_l", [pack_root], provider="CUDA")


def test_which_distributions_count_as_onnxruntime():
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime_gpu", "onnxruntime-directml", "onnxruntime-rocm",
                 "onnxruntime-openvino", "onnxruntime-silicon", "ort-nightly-gpu", "ONNXRuntime-GPU"):
        assert runtime.is_runtime_distribution(name), name
    for name in ("onnxruntime-extensions", "onnxruntime-genai", "onnxruntime-ep-openvino", "onnx", "insightface"):
        assert not runtime.is_runtime_distribution(name), name


def test_installed_onnxruntime_is_a_single_distribution():
    dists = face_api.onnxruntime_distributions()
    assert dists, "onnxruntime not found among installed distributions"
    assert face_api.runtime_conflict(dists) is None, dists


# ---------------------------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------------------------
def test_every_face_with_keypoints_landmarks_and_embeddings(analysis):
    specs = [((200, 220), 120, 1), ((560, 300), 64, 2), ((820, 480), 190, 3)]
    faces = face_api.detect(analysis, batch(scene(700, 1000, specs)), order="left to right")
    assert len(faces) == 3 and faces.missing == () and faces.counts() == [1 * 3]
    for f, (c, d, _) in zip(faces, specs, strict=True):
        assert f.image_index == 0
        np.testing.assert_allclose(f.box, [c[0] - d / 2, c[1] - d / 2, c[0] + d / 2, c[1] + d / 2], atol=1.5)
        assert np.abs(f.kps - expected_kps(c, d)).max() < 0.03 * d + 1
        assert f.landmarks.shape == (106, 2) and f.score > 0.5
        # the landmarks follow the box (the synthesized model returns a mean shape within it)
        assert f.box[0] <= f.landmarks[:, 0].min() and f.landmarks[:, 0].max() <= f.box[2]
        assert abs(np.linalg.norm(f.embedding) - 1) < 1e-5 and f.embedding.dtype == np.float32
    sims = [float(faces[i].embedding @ faces[j].embedding) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert max(sims) < 0.99  # different textures, different identities


def test_same_results_as_insightface_face_analysis(pack_root, analysis):
    """Our detection + embedding of a 1024 photo equals insightface's own FaceAnalysis.get on the same models."""
    from insightface.app import FaceAnalysis

    specs = [((300, 300), 150, 4), ((700, 640), 90, 5), ((150, 820), 60, 6)]
    img = scene(1024, 1024, specs)
    app = FaceAnalysis(name=str(pack_root / "models" / "buffalo_l"), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1)
    ref = app.get(np.ascontiguousarray((img[..., ::-1] * 255).round().astype(np.uint8)))
    ours = face_api.detect(analysis, batch(img), order="left to right")
    assert len(ref) == len(ours) == 3
    for r in ref:
        o = min(ours, key=lambda f: np.abs(f.box - r.bbox).sum())
        np.testing.assert_allclose(o.box, r.bbox, atol=1e-3)
        np.testing.assert_allclose(o.kps, r.kps, atol=1e-3)
        np.testing.assert_allclose(o.embedding, r.normed_embedding, atol=1e-5)


def test_small_faces_in_a_large_photo_are_found_by_tiles(analysis, pack_root):
    """A 4096x3072 photo: 56 px faces shrink to 9 px in a 640 px pass (missed); tiles find every one, once,
    including faces that straddle tile seams."""
    from insightface.app import FaceAnalysis

    h, w = 3072, 4096
    plan = face_api.scan_plan(h, w, 640, 24)
    tiles = [p for p in plan if p.kind == "tiles"][0]
    seam_x = tiles.tiles[1][0] / tiles.scale + 40  # inside the overlap of the first two tile columns
    specs = [((300, 300), 56, 1), ((seam_x, 1500), 56, 2), ((2048, 2600), 64, 3), ((3900, 180), 60, 4),
             ((1200, 900), 700, 5)]
    img = scene(h, w, specs)
    faces = face_api.detect(analysis, batch(img), min_face_size=24)
    assert len(faces) == len(specs), faces.report
    for f, (c, d, _) in zip(match(faces, specs), specs, strict=True):
        assert abs(f.size - d) < 0.05 * d + 2 and np.hypot(f.center[0] - c[0], f.center[1] - c[1]) < 0.05 * d + 2
    # insightface's default two-size scan misses the small ones
    app = FaceAnalysis(name=str(pack_root / "models" / "buffalo_l"), allowed_modules=["detection"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1)
    assert len(app.get(np.ascontiguousarray((img[..., ::-1] * 255).astype(np.uint8)))) < len(specs)


def test_scan_plan():
    def tiles(plan):
        return sum(len(p.tiles) for p in plan if p.kind == "tiles")

    assert [p.kind for p in face_api.scan_plan(1024, 1024, 640, 24)] == ["global", "coarse"]
    assert tiles(face_api.scan_plan(4096, 4096, 640, 24)) == 25
    assert tiles(face_api.scan_plan(4096, 4096, 640, 200)) == 0
    assert tiles(face_api.scan_plan(20000, 20000, 640, 4)) <= detection.MAX_TILES
    assert [p.kind for p in face_api.scan_plan(1, 1, 640, 24)] == ["global", "coarse"]
    for h, w in ((4096, 4096), (3000, 8000), (700, 5000), (9000, 9000)):
        plan = face_api.scan_plan(h, w, 640, 24)
        scales = [p.scale for p in plan if p.kind == "tiles"] + [plan[0].scale]
        for p in plan:
            sw, sh = p.scaled_size
            covered = np.zeros((sh, sw), bool)
            for x, y, tw, th in p.tiles:
                assert 0 < tw <= p.canvas and 0 < th <= p.canvas
                covered[y:y + th, x:x + tw] = True
            assert covered.all()
            if p.kind == "tiles":
                # any face the next coarser pass is too coarse for fits whole into some tile
                coarser = scales[scales.index(p.scale) + 1]
                missed = detection.DETECTOR_MIN_FACE * p.scale / coarser
                for axis in (0, 1):
                    starts = sorted({t[axis] for t in p.tiles})
                    for a, b in zip(starts, starts[1:], strict=False):
                        assert a + p.canvas - b >= missed


def test_batch_mixing_images_with_and_without_faces(analysis):
    imgs = batch(scene(480, 640, [((200, 200), 100, 1), ((480, 260), 120, 2)]),
                 scene(480, 640, []),
                 scene(480, 640, [((320, 240), 150, 3)]))
    with pytest.raises(face_api.NoFaceError) as e:
        face_api.detect(analysis, imgs)
    msg = str(e.value)
    assert "image(s) 1 of the batch of 3" in msg and "det_10g.onnx" in msg and "threshold 0.5" in msg
    assert "global pass" in msg and "flag and pass through" in msg
    with pytest.raises(ValueError, match="if_no_face must be one of 'error', 'flag'"):
        face_api.detect(analysis, imgs, if_no_face="flag and pass through")  # a widget label, not a value
    ticks = []
    faces = face_api.detect(analysis, imgs, if_no_face=face_api.IfNoFace.FLAG,
                            progress=lambda d, t: ticks.append((d, t)))
    assert ticks == [(1, 3), (2, 3), (3, 3)]
    assert faces.missing == (1,) and faces.flagged and faces.counts() == [2, 0, 1]
    assert [f.image_index for f in faces] == [0, 0, 2]
    assert faces.report.startswith("WARNING: no face found in image(s) 1 of 3")
    assert "NOT anonymized" in faces.report
    preview = face_api.draw_faces(imgs, faces)
    assert preview.shape == (3, 480, 640, 3)
    red = (preview[1, :3, :, 0] > 0.9) & (preview[1, :3, :, 1] < 0.1)
    assert red.float().mean() > 0.9  # the flagged image has a red frame
    assert not ((preview[0, :3, :, 0] > 0.9) & (preview[0, :3, :, 1] < 0.1)).any()
    assert (preview[0] != imgs[0]).any()  # boxes drawn


def test_tiny_huge_grey_and_rgba_images(analysis):
    flag = face_api.IfNoFace.FLAG
    for shape in ((1, 1, 1, 3), (1, 8, 8, 3), (1, 3, 2000, 3), (1, 64, 64, 1)):
        faces = face_api.detect(analysis, torch.full(shape, 0.5), if_no_face=flag)
        assert faces.missing == (0,) and len(faces) == 0
    # a face filling a tiny image is found by the coarse pass
    faces = face_api.detect(analysis, batch(scene(48, 48, [((24, 24), 40, 1)])))
    assert len(faces) == 1 and abs(faces[0].size - 40) < 3
    # RGBA: alpha ignored; grey+alpha works
    rgba = torch.cat([batch(scene(300, 400, [((200, 150), 100, 2)])), torch.zeros(1, 300, 400, 1)], -1)
    assert len(face_api.detect(analysis, rgba)) == 1
    assert face_api.detect(analysis, torch.rand(1, 100, 120, 2), if_no_face=flag).missing == (0,)
    # uint8 input is accepted
    u8 = (batch(scene(300, 400, [((200, 150), 100, 2)])) * 255).round().to(torch.uint8)
    assert len(face_api.detect(analysis, u8)) == 1
    with pytest.raises(ValueError, match="channels last"):
        face_api.detect(analysis, torch.rand(1, 3, 64, 64))


def test_order_min_size_and_max_faces(analysis):
    specs = [((600, 200), 160, 1), ((100, 300), 60, 2), ((350, 420), 110, 3), ((850, 450), 48, 4)]
    imgs = batch(scene(560, 960, specs))
    lr = face_api.detect(analysis, imgs, order="left to right")
    np.testing.assert_allclose([f.center[0] for f in lr], [100, 350, 600, 850], atol=2)
    big = face_api.detect(analysis, imgs, order="largest first")
    assert [round(f.size) for f in big] == sorted([round(f.size) for f in big], reverse=True)
    tb = face_api.detect(analysis, imgs, order="top to bottom")
    np.testing.assert_allclose([f.center[1] for f in tb], [200, 300, 420, 450], atol=2)
    np.testing.assert_allclose([f.center[0] for f in big.sorted("right to left")], [850, 600, 350, 100], atol=2)
    by_score = face_api.detect(analysis, imgs, order="score")
    assert [f.score for f in by_score] == sorted([f.score for f in big], reverse=True)
    small = face_api.detect(analysis, imgs, min_face_size=50)
    assert len(small) == 3 and "1 smaller than min_face_size 50px ignored" in small.report
    top2 = face_api.detect(analysis, imgs, max_faces=2, order="left to right")
    np.testing.assert_allclose([f.center[0] for f in top2], [350, 600], atol=2)
    assert "2 more face(s) beyond max_faces=2 NOT kept" in top2.report
    assert len(big.largest()) == 1 and big.largest()[0].size == max(f.size for f in big)
    assert len(big.select([0, -1])) == 2
    with pytest.raises(IndexError, match="there are 4 face"):
        big.select([4])


def test_without_embeddings_or_landmarks(analysis):
    faces = face_api.detect(analysis, batch(scene(300, 400, [((200, 150), 100, 2)])), embeddings=False, landmarks=False)
    assert faces[0].embedding is None and faces[0].landmarks is None and faces.embedding_model == ""
    with pytest.raises(ValueError, match="no identity embeddings"):
        face_api.face_identity(faces)


# ---------------------------------------------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------------------------------------------
def test_identity_selection_and_averaging(analysis):
    # two reference photos of "person 7" (same texture) at different sizes and places, plus a bystander
    imgs = batch(scene(480, 640, [((200, 240), 160, 7), ((520, 120), 60, 8)]),
                 scene(480, 640, [((400, 260), 120, 7)]))
    faces = face_api.detect(analysis, imgs)
    e = {(f.image_index, round(f.size)): f.embedding for f in faces}
    largest = face_api.face_identity(faces, "largest", combine="batch")
    assert largest.embeddings.shape == (2, 512) and largest.model == "buffalo_l/w600k_r50.onnx"
    np.testing.assert_allclose(largest.embeddings[0].numpy(), e[(0, 160)], atol=1e-6)
    np.testing.assert_allclose(largest.embeddings[1].numpy(), e[(1, 120)], atol=1e-6)
    avg = face_api.face_identity(faces, "largest", combine="average")
    assert avg.embeddings.shape == (1, 512) and abs(float(avg.embeddings.norm()) - 1) < 1e-5
    ref = torch.nn.functional.normalize(torch.from_numpy(e[(0, 160)] + e[(1, 120)]), dim=0)
    torch.testing.assert_close(avg.embeddings[0], ref, atol=1e-5, rtol=0)
    # same texture -> same identity, whatever the size and position
    assert float(largest.embeddings[0] @ largest.embeddings[1]) > 0.98
    second = face_api.face_identity(faces.select([1]), "index", index=0, combine="batch")
    np.testing.assert_allclose(second.embeddings[0].numpy(), e[(0, 60)], atol=1e-6)
    assert len(face_api.face_identity(faces, "all", combine="batch")) == 3
    with pytest.raises(ValueError, match="image 1 has 1 face"):
        face_api.face_identity(faces, "index", index=1)
    flagged = face_api.detect(analysis, batch(scene(480, 640, [((200, 240), 160, 7)]), scene(480, 640, [])),
                              if_no_face=face_api.IfNoFace.FLAG)
    with pytest.raises(ValueError, match="no face in reference image"):
        face_api.face_identity(flagged)


def test_embed_faces_matches_detection(analysis):
    img = batch(scene(300, 400, [((200, 150), 100, 9)]))
    faces = face_api.detect(analysis, img)
    (emb,) = face_api.embed_faces(analysis, img[0], [faces[0].kps])
    np.testing.assert_allclose(emb, faces[0].embedding, atol=1e-6)
