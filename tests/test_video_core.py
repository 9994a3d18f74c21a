"""Anonymizing tracked clips (faceanon.video) and reference matching (faceanon.reference), host-independent.

The renderer here is a stand-in for the diffusion anonymizer (the host tests run the real one): it inverts the
colours inside each face's disc and says so in its changed mask, so coverage, exemption, chunking and the
fallbacks can be asserted exactly on the synthetic clip (tests/video_clips.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceanon import faces as F
from faceanon.reference import EVERYONE, EXCEPT, MATCH, NO_MATCH, ONLY, UNCERTAIN, match_track, to_anonymize
from faceanon.tracking import track_faces
from faceanon.video import TrackPlan, anonymize_tracks, blur_box, format_video_report
from dev.onnx_packs import write_pack
from tests.video_clips import detail, standard_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    write_pack(root / "models" / "buffalo_l", centered=True)
    analysis = F.load_face_analysis("buffalo_l", [str(root)], provider="CPU")
    frames, truth = standard_clip()
    frames = torch.from_numpy(frames).float() / 255.0
    faces = F.detect(analysis, frames, if_no_face=F.IfNoFace.FLAG)
    return frames, truth, track_faces(faces, len(frames), cuts=[14], max_gap=2)


def disc_renderer(calls):
    """Inverts colours inside a disc of each face's box (radius = 0.55 box); records every call."""
    def render(images, faces, ids):
        calls.append((images.shape[0], list(ids)))
        out, changed = images.clone(), torch.zeros(images.shape[:3])
        h, w = images.shape[1:3]
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        for f in faces:
            cx, cy = f.center
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= (0.55 * f.size) ** 2
            out[f.image_index][inside] = 1 - images[f.image_index][inside]
            changed[f.image_index][inside] = 1
        return out, changed
    return render


def plans(tracks, exempt=()):
    return [TrackPlan(t.id, t.id not in exempt) for t in tracks]


def owner(tracks, truth, scene, name):
    for t in tracks:
        if t.scene == scene:
            f = next(f for f in t.faces if f.image_index not in t.interpolated)
            p = min(truth[f.image_index], key=lambda p: np.hypot(f.center[0] - p.center[0], f.center[1] - p.center[1]))
            if p.name == name:
                return t
    raise AssertionError(name)


def disc(truth_person, shape):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = truth_person.diameter / 2 - 1
    return (xx - truth_person.center[0]) ** 2 + (yy - truth_person.center[1]) ** 2 <= r ** 2


def test_every_face_changed_in_every_frame_including_missed_ones(clip):
    frames, truth, tracks = clip
    calls = []
    out, changed, report = anonymize_tracks(frames, tracks, disc_renderer(calls), plans(tracks), chunk_frames=6)
    assert out.shape == frames.shape and changed.shape == frames.shape[:3]
    for i, people in enumerate(truth):
        for p in people:
            inside = disc(p, frames.shape[1:3])
            assert float(changed[i][torch.from_numpy(inside)].min()) == 1.0, f"{p.name} not covered in frame {i}"
            assert not torch.equal(out[i][torch.from_numpy(inside)], frames[i][torch.from_numpy(inside)])
    astro = next(t for t in report["tracks"] if t["interpolated"] == [4, 5])
    assert astro["anonymized"] == list(range(14))  # the missed frames 4 and 5 too
    # chunks: never more than 6 frames at a time, every frame once
    assert max(n for n, _ in calls) <= 6 and sum(n for n, _ in calls) == 20
    # outside the faces, frames are untouched
    assert torch.equal(out[changed == 0], frames[changed == 0])


def test_chunk_size_does_not_change_the_result(clip):
    frames, _, tracks = clip
    a = anonymize_tracks(frames, tracks, disc_renderer([]), plans(tracks), chunk_frames=1)[0]
    b = anonymize_tracks(frames, tracks, disc_renderer([]), plans(tracks), chunk_frames=64)[0]
    assert torch.equal(a, b)


def test_exempt_person_bit_identical_in_every_frame(clip):
    frames, truth, tracks = clip
    astro = owner(tracks, truth, 0, "astronaut")
    calls = []
    out, changed, report = anonymize_tracks(frames, tracks, disc_renderer(calls), plans(tracks, {astro.id}))
    assert all(astro.id not in ids for _, ids in calls)
    for i in range(14):
        p = truth[i][0]
        assert p.name == "astronaut"
        inside = torch.from_numpy(disc(p, frames.shape[1:3]))
        assert torch.equal(out[i][inside], frames[i][inside]) and float(changed[i][inside].max()) == 0
    entry = next(t for t in report["tracks"] if t["track"] == astro.id)
    assert entry["exempt"] == list(range(14)) and entry["anonymized"] == []
    assert "EXEMPT (kept as is) in 0-13" in format_video_report(report)


def test_a_failed_face_stops_or_is_blurred_never_passed_through(clip):
    frames, truth, tracks = clip

    def broken(images, faces, ids):
        raise RuntimeError("out of memory (simulated)")

    with pytest.raises(RuntimeError, match=r"could not be anonymized \(RuntimeError: out of memory \(simulated\)\)"
                                           r".*Set fallback to 'blur'"):
        anonymize_tracks(frames, tracks, broken, plans(tracks))
    out, changed, report = anonymize_tracks(frames, tracks, broken, plans(tracks), fallback="blur")
    for i, people in enumerate(truth):
        for p in people:
            inside = torch.from_numpy(disc(p, frames.shape[1:3]))
            assert float(changed[i][inside].min()) == 1.0
            assert detail(out[i], p) < 0.3 * detail(frames[i], p), f"{p.name} in frame {i} not blurred"
    text = format_video_report(report)
    assert "BLURRED in frame(s) 0-13" in text and "out of memory (simulated) -> blurred" in text


def test_a_renderer_that_misses_a_face_triggers_the_fallback(clip):
    frames, _, tracks = clip

    def lazy(images, faces, ids):  # "anonymizes" nothing: the changed mask covers no face
        return images.clone(), torch.zeros(images.shape[:3])

    with pytest.raises(RuntimeError, match="the changed region does not cover the face"):
        anonymize_tracks(frames, tracks, lazy, plans(tracks))

    def nan(images, faces, ids):
        out, changed = disc_renderer([])(images, faces, ids)
        return out * float("nan"), changed

    with pytest.raises(RuntimeError, match="non-finite pixels"):
        anonymize_tracks(frames, tracks, nan, plans(tracks))


def test_interruptions_are_not_turned_into_a_fallback(clip):
    frames, _, tracks = clip

    class CancelledError(Exception):
        pass

    def cancelled(images, faces, ids):
        raise CancelledError()

    with pytest.raises(CancelledError):
        anonymize_tracks(frames, tracks, cancelled, plans(tracks), fallback="blur",
                         passthrough_errors=(CancelledError,))


def test_tracks_of_another_clip_are_refused(clip):
    frames, _, tracks = clip
    with pytest.raises(ValueError, match=r"made on a clip of 20 frame\(s\) of 256x176, but the frames given are 19"):
        anonymize_tracks(frames[1:], tracks, disc_renderer([]), plans(tracks))
    with pytest.raises(ValueError, match=r"frames given are 20 frame\(s\) of 128x88"):
        anonymize_tracks(frames[:, ::2, ::2], tracks, disc_renderer([]), plans(tracks))


def test_blur_box_is_local():
    img = torch.rand(40, 50, 3)
    out, mask = blur_box(img, [10, 10, 20, 20])
    assert torch.equal(out[mask == 0], img[mask == 0]) and float(mask.sum()) == 12 * 12


# ---------------------------------------------------------------------------------------------------------------
# reference matching and policy
# ---------------------------------------------------------------------------------------------------------------
def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_vote_match_no_match_uncertain():
    rng = np.random.default_rng(0)
    refs = unit(rng.standard_normal((2, 512)))
    same = unit(refs[1] + 0.05 * rng.standard_normal((6, 512)))
    other = unit(rng.standard_normal((6, 512)))
    m = match_track(same, refs)
    assert m.decision == MATCH and m.reference == 1 and m.votes == 6
    assert match_track(other, refs).decision == NO_MATCH
    mixed = np.concatenate([same[:2], other[:4]])  # 2 of 6 faces look like reference 1: not enough to be sure
    assert match_track(mixed, refs).decision == UNCERTAIN
    assert match_track(mixed, refs, min_votes=0.3).decision == MATCH
    assert match_track(np.zeros((0, 512)), refs).decision == UNCERTAIN


@pytest.mark.parametrize("decision, everyone, except_, only", [
    (MATCH, True, False, True), (NO_MATCH, True, True, False), (UNCERTAIN, True, True, True)])
def test_policies_fail_closed(decision, everyone, except_, only):
    from faceanon.reference import Match

    m = Match(decision)
    assert to_anonymize(EVERYONE, m) is everyone
    assert to_anonymize(EXCEPT, m) is except_
    assert to_anonymize(ONLY, m) is only
    with pytest.raises(ValueError, match="needs reference identities"):
        to_anonymize(EXCEPT, None)
    with pytest.raises(ValueError, match="unknown policy"):
        to_anonymize("some", m)


def test_reference_photo_matches_its_track_on_the_clip(clip):
    frames, truth, tracks = clip
    astro = owner(tracks, truth, 0, "astronaut")
    refs = unit(astro.identity()[None])
    decisions = {t.id: match_track(t.embeddings(), refs).decision for t in tracks}
    assert decisions[astro.id] == MATCH and decisions[owner(tracks, truth, 1, "astronaut").id] == MATCH
    assert decisions[owner(tracks, truth, 0, "camera").id] == NO_MATCH
    assert decisions[owner(tracks, truth, 1, "chelsea").id] == NO_MATCH
