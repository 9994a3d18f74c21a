"""Face tracking (faceanon.tracking), host-independent: a synthetic clip built from real photos (tests/video_clips.py)
where faces move, grow, leave and come back, are missed by the detector in some frames, and a scene cut."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from faceanon import faces as F
from faceanon.faces.types import Face
from faceanon.tracking import box_iou, keyframes, scene_cuts, track_faces, track_video
from dev.onnx_packs import KPS_OFFSETS, write_pack
from tests.video_clips import standard_clip


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    write_pack(root / "models" / "buffalo_l", centered=True)
    return F.load_face_analysis("buffalo_l", [str(root)], provider="CPU")


@pytest.fixture(scope="module")
def clip():
    frames, truth = standard_clip()
    return torch.from_numpy(frames).float() / 255.0, truth


@pytest.fixture(scope="module")
def detections(analysis, clip):
    frames, _ = clip
    return F.detect(analysis, frames, if_no_face=F.IfNoFace.FLAG)


def person_of(face: Face, people) -> str:
    """The ground-truth person nearest to a face's box centre (within 8 px)."""
    d = [np.hypot(face.center[0] - p.center[0], face.center[1] - p.center[1]) for p in people]
    assert min(d) < 8, f"face at {face.center} matches nobody in {people}"
    return people[int(np.argmin(d))].name


def detector(analysis, frames, calls):
    def detect(indices):
        calls.append(list(indices))
        found = F.detect(analysis, frames[indices], if_no_face=F.IfNoFace.FLAG)
        return [replace(f, image_index=indices[f.image_index]) for f in found]
    return detect


def test_scene_cut_found_from_the_frames(clip):
    frames, _ = clip
    assert scene_cuts(frames) == [14]
    assert scene_cuts(frames, threshold=1.0) == []
    assert scene_cuts(frames[:1]) == []


def test_one_stable_track_per_person_and_new_ids_after_the_cut(clip, detections):
    frames, truth = clip
    tracks = track_faces(detections, len(frames), cuts=scene_cuts(frames), max_gap=2)
    assert len(tracks) == 4
    owner = {}
    for t in tracks:
        names = {person_of(f, truth[f.image_index]) for f in t.faces if f.image_index not in t.interpolated}
        assert len(names) == 1, f"track {t.id} mixes people {names}"
        owner[(t.scene, names.pop())] = t
    assert set(owner) == {(0, "astronaut"), (0, "camera"), (1, "astronaut"), (1, "chelsea")}
    # the same person after the cut is a new track; ids in order of first appearance
    assert owner[(0, "astronaut")].id != owner[(1, "astronaut")].id
    assert sorted(t.id for t in tracks) == [0, 1, 2, 3]
    assert all(t.last < 14 for t in tracks if t.scene == 0) and all(t.first >= 14 for t in tracks if t.scene == 1)
    # missed detections (dim face in frames 4, 5) are interpolated, near where the face really is
    astro = owner[(0, "astronaut")]
    assert astro.frames == tuple(range(14)) and astro.interpolated == {4, 5} and astro.lost == ()
    for face in astro.faces:
        p = truth[face.image_index][0]
        assert np.hypot(face.center[0] - p.center[0], face.center[1] - p.center[1]) < 4  # detector: 3 px at 13
        np.testing.assert_allclose(face.kps, np.asarray(p.center) + KPS_OFFSETS * p.diameter, atol=4)
    # "camera" leaves (frames 8-10, longer than the window) and comes back: same track, the gap reported lost
    cam = owner[(0, "camera")]
    assert cam.detected == (*range(8), 11, 12, 13) and cam.lost == (8, 9, 10) and not cam.interpolated
    assert "LOST beyond the window in frame(s) 8-10" in tracks.report
    assert "interpolated in 2 (4-5)" in tracks.report


def test_a_larger_window_fills_the_gap_and_smaller_ids_stay(clip, detections):
    frames, _ = clip
    tracks = track_faces(detections, len(frames), cuts=[14], max_gap=3)
    cam = next(t for t in tracks if t.lost or 8 in t.interpolated)
    assert cam.interpolated == {8, 9, 10} and cam.lost == ()


def test_without_the_cut_the_same_person_continues_by_identity(clip, detections):
    frames, _ = clip
    tracks = track_faces(detections, len(frames), cuts=[], max_gap=2)
    # no cut: the astronaut's track continues into the second shot by identity (the cut is what ends tracks)
    assert len(tracks) < 4
    assert any(t.first == 0 and t.last == 19 and t.lost == () for t in tracks)


def test_identity_is_the_mean_of_normalised_embeddings(clip, detections):
    frames, _ = clip
    for t in track_faces(detections, len(frames), cuts=[14], max_gap=2):
        embs = np.stack([f.embedding for f in t.faces if f.embedding is not None])
        mean = embs.mean(0)
        np.testing.assert_allclose(t.identity(), mean / np.linalg.norm(mean), atol=1e-6)
        assert all(f.embedding is None for f in t.faces if f.image_index in t.interpolated)


def _line_faces(n, noise, seed, emb):
    rng = np.random.default_rng(seed)
    truth = np.stack([np.array([40 + 3.0 * i, 50 + 1.0 * i]) for i in range(n)])
    faces = []
    for i, c in enumerate(truth):
        jitter = rng.normal(0, noise, 2)
        box = np.r_[c - 30 + jitter, c + 30 + jitter].astype(np.float32)
        kps = (c + jitter + KPS_OFFSETS * 60).astype(np.float32)
        faces.append(Face(image_index=i, box=box, score=0.9, kps=kps, embedding=emb))
    return faces, truth


def test_smoothing_removes_jitter_without_lag():
    emb = np.ones(512, np.float32) / np.sqrt(512)
    faces, truth = _line_faces(40, 2.0, 0, emb)
    raw = track_faces(faces, 40, image_size=(200, 300), smoothing=0.0).tracks[0]
    smooth = track_faces(faces, 40, image_size=(200, 300), smoothing=0.7).tracks[0]
    err = lambda t: np.mean([np.hypot(*(np.asarray(f.center) - c)) for f, c in zip(t.faces, truth, strict=True)])  # noqa: E731
    assert err(smooth) < 0.6 * err(raw)
    # frame-to-frame jitter of the keypoints drops too
    jit = lambda t: np.std(np.diff(np.stack([f.kps for f in t.faces]), axis=0)[:, :, 0])  # noqa: E731
    assert jit(smooth) < 0.5 * jit(raw)
    # no lag on clean constant-velocity motion (zero-phase filtering)
    clean, truth = _line_faces(40, 0.0, 0, emb)
    t = track_faces(clean, 40, image_size=(200, 300), smoothing=0.9).tracks[0]
    assert max(np.hypot(*(np.asarray(f.center) - c)) for f, c in zip(t.faces, truth, strict=True)) < 1.0


def test_crossing_people_keep_their_tracks_by_identity():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 512)).astype(np.float32)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    faces = []
    for i in range(11):  # a walks right, b walks left; they overlap around frame 5
        for x, emb in ((20 + 10 * i, a), (120 - 10 * i, b)):
            box = np.array([x - 25, 40, x + 25, 90], np.float32)
            faces.append(Face(image_index=i, box=box, score=0.9, kps=np.zeros((5, 2), np.float32), embedding=emb))
    tracks = track_faces(faces, 11, image_size=(128, 160), smoothing=0.0)
    assert len(tracks) == 2
    for t in tracks:
        sims = [float(np.dot(f.embedding, t.identity())) for f in t.faces]
        assert min(sims) > 0.99, "a track swapped people where they crossed"


def test_detect_every_k_with_extra_passes_finds_the_same_tracks(analysis, clip, detections):
    frames, truth = clip
    every = track_faces(detections, len(frames), cuts=[14], max_gap=2)
    calls = []
    sparse = track_video(detector(analysis, frames, calls), frames, detect_every=3, max_gap=2)
    ran = sorted({f for c in calls for f in c})
    assert calls[0] == keyframes(20, 3, [14]) == [0, 3, 6, 9, 12, 13, 14, 17, 19]
    assert len(ran) < 20 and len(calls) > 1, "no extra detection pass ran"
    # the extra passes looked next to the camera person's exit (after 6) and return (before 12)
    assert {7, 11} <= set(ran)
    assert [(t.first, t.last, t.scene) for t in sparse] == [(t.first, t.last, t.scene) for t in every]
    cam = sparse.tracks[1]
    assert cam.lost == (8, 9, 10) and all(person_of(f, truth[f.image_index]) == "camera"
                                          for f in cam.faces if f.image_index not in cam.interpolated)
    assert "extra detection pass" in sparse.report


def test_faces_view_excludes_tracks_and_renumbers_chunks(clip, detections):
    frames, _ = clip
    tracks = track_faces(detections, len(frames), cuts=[14], max_gap=2)
    faces, ids = tracks.faces(frames=range(4, 8), exclude=[1])
    assert faces.batch_size == 4 and ids == [0, 0, 0, 0]
    assert [f.image_index for f in faces] == [0, 1, 2, 3]
    everything, ids = tracks.faces()
    assert len(everything) == sum(len(t.faces) for t in tracks) and len(ids) == len(everything)


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])),
                               [[1.0, 50 / 150, 0.0]])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one frame"):
        track_faces([], 0, image_size=(10, 10))
    face = Face(image_index=5, box=np.zeros(4, np.float32), score=1.0, kps=np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="frame 5, outside the clip's 3 frame"):
        track_faces([face], 3, image_size=(10, 10))
    with pytest.raises(ValueError, match="detect_every"):
        keyframes(10, 0)


def test_function_defaults_are_the_knob_table_defaults():
    """The node widgets read faceanon/knobs.py; the host-free functions must default to the same values."""
    import inspect

    from faceanon.knobs import KNOBS
    from faceanon.reference import match_track
    from faceanon.video import anonymize_tracks

    defaults = {name: p.default for fn in (track_video, track_faces, match_track, anonymize_tracks)
                for name, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}
    defaults["scene_cut"] = inspect.signature(scene_cuts).parameters["threshold"].default
    defaults["match_threshold"] = inspect.signature(match_track).parameters["threshold"].default
    for name in ("detect_every", "max_gap", "scene_cut", "smoothing", "match_threshold", "min_votes", "chunk_frames"):
        assert defaults[name] == KNOBS[name].default, name


def test_preview_colours_and_labels_follow_the_track(clip, detections):
    """draw_faces with per-face labels and colours (what Track Faces' preview passes): one colour per track."""
    from faceanon.faces.preview import _COLORS

    frames, _ = clip
    tracks = track_faces(detections, len(frames), cuts=[14], max_gap=2)
    faces, ids = tracks.faces(frames=[0, 6])
    preview = F.draw_faces(frames[[0, 6]], faces, labels=[f"T{i}" for i in ids], colors=ids)
    for face, tid in zip(faces, ids, strict=True):
        x1, y1, x2, y2 = (int(v) for v in face.box)
        row = preview[face.image_index, (y1 + y2) // 2, max(x1 - 1, 0):x1 + 2].numpy() * 255
        assert any(np.abs(px - _COLORS[tid % len(_COLORS)]).max() <= 1 for px in row), (tid, row)
