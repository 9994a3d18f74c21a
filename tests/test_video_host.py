"""Video in a real ComfyUI: core LoadVideo -> GetVideoComponents -> Track Faces -> Anonymize People -> core
CreateVideo (original audio and frame rate) -> FaceAnon Save Video; reference exemptions; one seed and one identity
per track; interpolated faces anonymized; bad input refused with a clear message.

Clips are built from scikit-image photos (tests/video_clips.py); faces come from a synthesized pack whose
recognizer tells the textures apart (`centered`), the model is the random tiny SD1.5 checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dev.host import HostRunError, ensure_tiny_sd15_checkpoint
from dev.onnx_packs import write_pack
from tests.video_clips import Person, detail, read_video, render, write_video
from tests.workflow_assets import write_tiny_faceid

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster on 2 cores

PACK = "faceanon_video_people"  # buffalo_l file names, texture-sensitive recognizer
FAST = "resolution = 64\nsteps = 2\nmask_delay = 1"
SIZE = (128, 160)


def walk(n, dim=()):
    """n frames: the astronaut walks right; the camera man stands, missed by the detector in frames `dim`."""
    return [[Person("astronaut", (40 + 4 * i, 60), 48), Person("camera", (118, 70 + i), 44, dim=i in dim)]
            for i in range(n)]


@pytest.fixture(scope="module")
def setup(host):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    write_pack(host.models_dir / "insightface" / "models" / PACK, centered=True)
    write_tiny_faceid(host.models_dir / "ipadapter" / "tiny-faceid_sd15.bin")
    frames = render([("astronaut", walk(8))], SIZE)
    write_video(host.input_dir / "people.mp4", frames, fps=12.5, title="Alice Example at home")
    for name in ("astronaut", "camera"):
        photo = render([("coffee", [[Person(name, (80, 64), 80)]])], SIZE)[0]
        Image.fromarray(photo).save(host.input_dir / f"reference_{name}.png")
    Image.fromarray(render([("coffee", [[]])], SIZE)[0]).save(host.input_dir / "reference_empty.png")
    return ckpt


def video_graph(ckpt, policy="everyone except the reference people", reference="reference_astronaut.png",
                second_reference=None):
    graph = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "people.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "FaceAnonLoadFaceAnalysis", "inputs": {"model_pack": PACK, "provider": "CPU",
                                                                   "det_size": 640}},
        "4": {"class_type": "FaceAnonTrackFaces", "inputs": {
            "face_analysis": ["3", 0], "image": ["2", 0], "threshold": 0.5, "min_face_size": 24, "detect_every": 1,
            "max_gap": 8, "scene_cut": 0.5, "smoothing": 0.5}},
        "5": {"class_type": "LoadImage", "inputs": {"image": reference}},
        "6": {"class_type": "FaceAnonReferenceFaces", "inputs": {
            "face_analysis": ["3", 0], "image": ["5", 0], "combine": "one person per photo", "threshold": 0.5,
            "min_face_size": 24}},
        "7": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "8": {"class_type": "FaceAnonLoadIDAdapter", "inputs": {"adapter": "tiny-faceid_sd15.bin",
                                                                "lora": "embedded (from the adapter file)"}},
        "9": {"class_type": "FaceAnonAnonymizePeople", "inputs": {
            "image": ["2", 0], "model": ["7", 0], "clip": ["7", 1], "vae": ["7", 2], "face_analysis": ["3", 0],
            "id_adapter": ["8", 0], "preset": "NullFace (SD1.5)", "seed": 3, "keep": "nothing",
            "if_no_face": "error", "overrides": FAST, "tracks": ["4", 0], "references": ["6", 0],
            "policy": policy, "match_threshold": 0.4, "min_votes": 0.5, "fallback": "stop", "chunk_frames": 4,
            "threshold": 0.5, "min_face_size": 24}},
        "10": {"class_type": "CreateVideo", "inputs": {"images": ["9", 0], "fps": ["2", 2], "audio": ["2", 1]}},
        "11": {"class_type": "FaceAnonSaveVideo", "inputs": {"video": ["10", 0], "filename_prefix": "faceanon/clip",
                                                             "crf": 12}},
    }
    if second_reference:  # two reference photos as one batch
        graph["12"] = {"class_type": "LoadImage", "inputs": {"image": second_reference}}
        graph["13"] = {"class_type": "ImageBatch", "inputs": {"image1": ["5", 0], "image2": ["12", 0]}}
        graph["6"]["inputs"]["image"] = ["13", 0]
    return graph


def test_video_through_core_nodes_keeps_frames_rate_audio_and_writes_no_metadata(host, setup):
    """Both people are in the reference photos and the policy keeps them (so this graph runs no diffusion; the
    next test renders). The saved file has the source's frame count, order, rate and audio, and no tags at all (the
    source's title, the prompt and the workflow stay out)."""
    out = host.run(video_graph(setup, second_reference="reference_camera.png"))
    source = read_video(host.input_dir / "people.mp4")
    assert source["tags"].get("title") == "Alice Example at home"  # the source does carry a name
    frames, audio, fps = out["2"]
    assert fps == 12.5 and frames.shape[0] == 8
    tracks = out["4"][0]
    assert len(tracks) == 2 and all(t.frames == tuple(range(8)) for t in tracks)
    anonymized, changed, text = out["9"]
    assert torch.equal(anonymized, frames) and float(changed.max()) == 0
    assert text.count("EXEMPT (kept as is) in 0-7") == 2 and "vote for reference 0" in text
    assert "vote for reference 1" in text
    saved = sorted((host.output_dir / "faceanon").glob("clip_*.mp4"))[-1]
    info = read_video(saved)
    assert info["frames"].shape[0] == 8 and info["fps"] == 12.5
    assert info["audio"] == {"sample_rate": 16000, "channels": 2, "samples": source["audio"]["samples"]} or (
        info["audio"]["sample_rate"] == 16000 and info["audio"]["channels"] == 2
        and abs(info["audio"]["samples"] - audio["waveform"].shape[-1]) <= 2048)
    # frame order: each saved frame is closest to the anonymized frame of the same index
    ours = (anonymized.numpy() * 255).round()
    dist = np.abs(info["frames"][:, None].astype(np.float32) - ours[None]).mean((2, 3, 4))
    assert list(dist.argmin(1)) == list(range(8))
    # no metadata: only the MP4 brand fields, nothing from the source or the prompt
    assert set(info["tags"]) <= {"major_brand", "minor_version", "compatible_brands"}
    blob = saved.read_bytes()
    for needle in (b"Alice", b"people.mp4", b"prompt", b"workflow", b"FaceAnon", b"Lavf"):
        assert needle not in blob, needle


def test_one_seed_and_one_identity_per_track_interpolated_faces_too_exempt_bit_identical(host, setup, one_thread):
    video = host.pack("nodes.video")
    tracking = host.pack("nodes.tracking")
    frames = torch.from_numpy(render([("astronaut", walk(3, dim=(1,)))], SIZE)).float() / 255
    loaded = host.run({k: v for k, v in video_graph(setup).items() if k in ("3", "5", "6", "7", "8")},
                      all_nodes=True)
    analysis, refs = loaded["3"][0], loaded["6"][0]
    model, clip, vae = loaded["7"]
    adapter = loaded["8"][0]
    tracks = tracking.track_clip(analysis, frames, max_gap=2)
    cam = next(t for t in tracks if t.interpolated)
    astro = next(t for t in tracks if t.id != cam.id)
    assert cam.interpolated == {1} and astro.frames == (0, 1, 2)
    calls = []
    real = video.anonymize

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    video.anonymize = spy
    try:
        with torch.inference_mode():
            result = video.FaceAnonAnonymizePeople.execute(
                frames, model, clip, vae, analysis, adapter, "NullFace (SD1.5)", 11, overrides=FAST, tracks=tracks,
                references=refs, policy="everyone except the reference people", chunk_frames=2)
    finally:
        video.anonymize = real
    out, changed, text = result.args
    assert out.shape == frames.shape
    # the chunk size bounds memory only: the whole clip in one chunk gives the same frames
    with torch.inference_mode():
        whole = video.FaceAnonAnonymizePeople.execute(
            frames, model, clip, vae, analysis, adapter, "NullFace (SD1.5)", 11, overrides=FAST, tracks=tracks,
            references=refs, policy="everyone except the reference people", chunk_frames=3).args[0]
    assert float((whole - out).abs().max()) < 2e-3
    # chunks of 2 frames; only the camera man's faces were rendered, with his track's seed and identity every time
    assert len(calls) == 2 and sum(len(c["faces"]) for c in calls) == 3
    seeds = {s for c in calls for s in c["face_seeds"]}
    assert seeds == {host.pack("nodes.anonymize").face_seed(11, cam.id)}
    for c in calls:
        for ident in c["identities"]:
            np.testing.assert_array_equal(ident, cam.identity())
    report = json.loads(result.ui["faceanon_report"][0])
    assert f"(frames 0-2, seed {host.pack('nodes.anonymize').face_seed(11, cam.id)})" in text
    entry = next(t for t in report["tracks"] if t["track"] == cam.id)
    assert entry["anonymized"] == [0, 1, 2] and entry["interpolated"] == [1]
    yy, xx = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    for i, people in enumerate(walk(3, dim=(1,))):
        for p in people:
            inside = torch.from_numpy((xx - p.center[0]) ** 2 + (yy - p.center[1]) ** 2 <= (p.diameter / 2 - 2) ** 2)
            if p.name == "astronaut":  # exempt: bit-identical, in every frame
                assert torch.equal(out[i][inside], frames[i][inside]) and float(changed[i][inside].max()) == 0
            else:  # anonymized in every frame, the missed frame 1 too: the changed mask covers the eyes, nose
                # and mouth (the paste mask is face-shaped: the top of the disc, a forehead, may stay)
                core = torch.from_numpy((xx - p.center[0]) ** 2 + (yy - p.center[1]) ** 2 <= (0.3 * p.diameter) ** 2)
                assert float(changed[i][core].min()) > 0.5, f"frame {i}"
                assert float((out[i][core] - frames[i][core]).abs().mean()) > 0.01


def test_still_photo_policy_fallback_and_bad_input(host, setup):
    video = host.pack("nodes.video")
    tracking = host.pack("nodes.tracking")
    loaded = host.run({k: v for k, v in video_graph(setup).items() if k in ("3", "6", "5")}, all_nodes=True)
    analysis, refs = loaded["3"][0], loaded["6"][0]
    photo = torch.from_numpy(render([("astronaut", [walk(1)[0]])], SIZE)).float() / 255
    # a still photo (no tracks): the astronaut is a reference person and keeps his face; the camera man must be
    # anonymized, but there is no model here (None), so rendering fails: 'stop' raises, 'blur' blurs his box
    args = (photo, None, None, None, analysis, None, "NullFace (SD1.5)", 0)
    kwargs = {"overrides": FAST, "references": refs, "policy": "everyone except the reference people"}
    with pytest.raises(RuntimeError, match="could not be anonymized .*Nothing was passed through"):
        video.FaceAnonAnonymizePeople.execute(*args, **kwargs)
    out, changed, text = video.FaceAnonAnonymizePeople.execute(*args, fallback="blur", **kwargs).args
    assert "match: 1/1 face(s) vote for reference 0" in text and "no match: 0/1" in text
    assert "BLURRED in frame(s) 0" in text
    yy, xx = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    for p in walk(1)[0]:
        inside = torch.from_numpy((xx - p.center[0]) ** 2 + (yy - p.center[1]) ** 2 <= (p.diameter / 2 - 2) ** 2)
        if p.name == "astronaut":
            assert torch.equal(out[0][inside], photo[0][inside])
        else:
            assert float(changed[0][inside].min()) == 1.0
            assert detail(out[0], p) < 0.3 * detail(photo[0], p)  # the face's detail is gone
    with pytest.raises(ValueError, match="needs the reference people"):
        video.FaceAnonAnonymizePeople.execute(*args, policy="only the reference people")
    # a single frame, an empty batch, tracks of another clip
    with pytest.raises(ValueError, match="at least 2 frames in order, got 1"):
        tracking.track_clip(analysis, photo)
    with pytest.raises(ValueError, match="empty image batch"):
        tracking.track_clip(analysis, photo[:0])
    clip = torch.cat([photo, photo])
    tracks = tracking.track_clip(analysis, clip)
    with pytest.raises(ValueError, match=r"frames given are 2 frame\(s\) of 80x64"):
        video.FaceAnonAnonymizePeople.execute(clip[:, ::2, ::2], *args[1:], tracks=tracks)
    # a reference photo without a face
    with pytest.raises(HostRunError, match=r"no face found in reference photo\(s\) 0 of 1"):
        host.run(video_graph(setup, reference="reference_empty.png"))
