"""Units of the harness: mesh-derived pose/gaze/expression, SSIM, baselines, the photo cache."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def mesh_points(astronaut, tools):
    """The refined 478-point mesh of the astronaut's face, in crop pixels."""
    from faceanon.evaluate import mesh as mesh_mod

    (box,) = tools.detect(astronaut)
    crop, _ = tools.mesh_crop(astronaut, box)
    _, face_mesh = tools._mp_models()
    found = face_mesh.process(crop)
    pts = np.array([(p.x, p.y, p.z) for p in found.multi_face_landmarks[0].landmark]) * tools.mesh_size
    assert pts.shape == (mesh_mod.N_POINTS, 3)
    return pts


def _rot_z(points, degrees):
    t = np.radians(degrees)
    r = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    c = points.mean(axis=0)
    return (points - c) @ r.T + c


def test_in_plane_rotation_moves_roll_only_and_keeps_gaze_and_expression(mesh_points):
    from faceanon.evaluate.mesh import MeshFeatures, compare

    a = MeshFeatures.from_points(mesh_points)
    b = MeshFeatures.from_points(_rot_z(mesh_points, 20.0))
    d = compare(a, b)
    assert d["roll_diff_deg"] == pytest.approx(20.0, abs=0.5)
    assert d["yaw_diff_deg"] < 0.5 and d["pitch_diff_deg"] < 0.5
    assert d["gaze_diff"] < 1e-9 and d["expr_diff"] < 1e-9  # rotation/translation invariant by construction
    assert abs(a.yaw) < 10 and abs(a.roll) < 10  # a near-frontal face
    assert 0.2 < a.ear_right < 0.45 and 0.2 < a.ear_left < 0.45  # open eyes
    same = compare(a, MeshFeatures.from_points(mesh_points * 2.0))  # scale invariant
    assert max(same.values()) < 1e-6


def test_opening_the_mouth_changes_the_expression_proxy(mesh_points):
    from faceanon.evaluate.mesh import MOUTH_LOWER, MeshFeatures, compare, inter_ocular

    moved = mesh_points.copy()
    moved[MOUTH_LOWER, 1] += 0.2 * inter_ocular(mesh_points)
    d = compare(MeshFeatures.from_points(mesh_points), MeshFeatures.from_points(moved))
    assert d["mouth_open_diff"] > 0.1 and d["ear_diff"] == 0.0 and d["pose_diff_deg"] < 1e-9


def test_wrong_mesh_shape_is_refused():
    from faceanon.evaluate.mesh import MeshFeatures

    with pytest.raises(ValueError, match=r"\(478, 3\)"):
        MeshFeatures.from_points(np.zeros((468, 3)))


def test_ssim_map_matches_scikit_image(astronaut):
    from skimage.metrics import structural_similarity

    from faceanon.evaluate.quality import gray, ssim_map

    a = gray(astronaut)
    rng = np.random.default_rng(0)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    _, ref = structural_similarity(a, b, data_range=255, full=True)
    assert np.abs(ssim_map(a, b) - ref).max() < 1e-9


@pytest.mark.parametrize("name", ["blur", "pixelate", "mask"])
def test_baselines_change_only_the_face_regions(astronaut, tools, name):
    from faceanon.evaluate.baselines import BaselineSettings, apply_baseline

    boxes = tools.detect(astronaut)
    before = astronaut.copy()
    settings = BaselineSettings()
    out = apply_baseline(name, astronaut, boxes, settings)
    assert np.array_equal(astronaut, before)  # input untouched
    inside = np.zeros(astronaut.shape[:2], bool)
    for b in boxes:
        r = b.scaled(settings.region_scale, astronaut.shape)
        inside[r.y0:r.y1, r.x0:r.x1] = True
    assert np.array_equal(out[~inside], astronaut[~inside])
    assert np.abs(out[inside].astype(int) - astronaut[inside]).mean() > 10
    assert np.array_equal(apply_baseline("unchanged", astronaut, boxes, settings), astronaut)


def test_photo_cache_is_reused_without_the_registry(tmp_path, monkeypatch):
    from faceanon.evaluate import photos

    folder = photos.fetch_photos(tmp_path, ["astronaut.png"])
    assert (folder / "astronaut.png").stat().st_size > 100_000

    def no_network(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(photos, "_pip_download", no_network)
    assert photos.fetch_photos(tmp_path, ["astronaut.png"]) == folder
    with pytest.raises(ValueError, match="unknown photo"):
        photos.fetch_photos(tmp_path, ["nobody.jpg"])


def test_detection_finds_the_six_faces_of_the_group_photo(photo_dir, tools):
    from faceanon.evaluate.images import read_image

    boxes = tools.detect(read_image(photo_dir / "t1.jpg"))
    assert len(boxes) == 6
    assert [b.center[0] for b in boxes] == sorted(b.center[0] for b in boxes)  # left to right
