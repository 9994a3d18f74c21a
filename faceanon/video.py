"""Anonymizing a tracked clip: one stand-in per track, bounded chunks of frames, never a face passed through.

`anonymize_tracks` walks the clip in chunks of `chunk_frames` frames (so a long clip never holds every frame's
latents at once: only the current chunk's faces are encoded, inverted and sampled), hands each chunk's faces to a
`render` function (the node layer's diffusion anonymizer) together with each face's track, and writes the result
into a copy of the clip. The same number of frames comes out, in order, at the same size.

Never fails open:

- every face of every track chosen for anonymization is rendered, including interpolated faces (frames where the
  detector missed the face inside a track);
- after rendering, each face must be covered by the changed mask and its pixels must be finite; a face that fails
  this, or a chunk whose rendering raised, either stops the run (fallback "stop") or gets a strong blur of its box
  (fallback "blur"), reported per frame;
- exempt tracks are left bit-identical (their pixels are not written unless another face's paste overlaps them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .faces.types import Face, Faces
from .tracking import Tracks, format_ranges

__all__ = ["FALLBACKS", "TrackPlan", "anonymize_tracks", "blur_box", "format_video_report"]

FALLBACKS = ("stop", "blur")

# render(images [n, H, W, C], faces of those frames (image_index 0..n-1), track id per face)
#   -> (images [n, H, W, C], changed [n, H, W])
Render = Callable[[torch.Tensor, Faces, list[int]], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TrackPlan:
    """What happens to one track: anonymized or exempt, and why (the reference match, if any)."""

    track: int
    anonymize: bool
    reason: str = "policy: everyone"


@dataclass
class _Log:
    anonymized: dict[int, list[int]] = field(default_factory=dict)
    blurred: dict[int, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def blur_box(image: torch.Tensor, box: Sequence[float], strength: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """A strong Gaussian blur of a face's box (enlarged by 10 %).

    Args:
        image: [H, W, C] float.
        box: x1, y1, x2, y2 in pixels.
        strength: blur sigma as a fraction of the box's longer side (0.25: no facial feature survives).

    Returns:
        (the blurred copy of `image`, [H, W] mask of the pixels that changed region).
    """
    import kornia.filters

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pad_x, pad_y = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    x1, x2 = max(int(np.floor(x1 - pad_x)), 0), min(int(np.ceil(x2 + pad_x)), w)
    y1, y2 = max(int(np.floor(y1 - pad_y)), 0), min(int(np.ceil(y2 + pad_y)), h)
    out = image.clone()
    mask = torch.zeros(h, w, device=image.device)
    if x2 <= x1 or y2 <= y1:
        return out, mask
    sigma = max(2.0, strength * max(x2 - x1, y2 - y1))
    k = 2 * int(3 * sigma) + 1
    region = image[y1:y2, x1:x2].movedim(-1, 0)[None].float()
    blurred = kornia.filters.gaussian_blur2d(region, (k, k), (sigma, sigma), border_type="replicate")
    blurred = 0.5 * blurred + 0.5 * region.mean((2, 3), keepdim=True)  # towards the mean: no layout survives
    out[y1:y2, x1:x2] = blurred[0].movedim(0, -1).to(image.dtype)
    mask[y1:y2, x1:x2] = 1.0
    return out, mask


def _covered(face: Face, changed: torch.Tensor, min_fraction: float = 0.5) -> bool:
    """Whether the changed mask [H, W] covers the face: at least `min_fraction` of the box's central half."""
    h, w = changed.shape
    cx, cy = face.center
    hw, hh = face.width / 4, face.height / 4
    x1, x2 = max(int(cx - hw), 0), min(int(np.ceil(cx + hw)), w)
    y1, y2 = max(int(cy - hh), 0), min(int(np.ceil(cy + hh)), h)
    if x2 <= x1 or y2 <= y1:  # outside the frame: nothing to cover
        return True
    return float((changed[y1:y2, x1:x2] > 0.5).float().mean()) >= min_fraction


def anonymize_tracks(
    frames: torch.Tensor,
    tracks: Tracks,
    render: Render,
    plans: Sequence[TrackPlan],
    *,
    chunk_frames: int = 16,
    fallback: str = "stop",
    min_coverage: float = 0.5,
    passthrough_errors: tuple[type[BaseException], ...] = (),
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Anonymize the tracks chosen by `plans`, chunk by chunk.

    Args:
        frames: [B, H, W, C] the clip (not modified).
        tracks: tracks of this clip (same frame count and size).
        render: the anonymizer of one chunk (see `Render`); it gets only the faces to anonymize.
        plans: one `TrackPlan` per track.
        chunk_frames: frames per chunk (memory bound: only one chunk's faces are in flight).
        fallback: "stop" raises on a face that could not be anonymized; "blur" blurs its box strongly.
        min_coverage: fraction of a face's central box the changed mask must cover (else: failed).
        passthrough_errors: exceptions that are never turned into a fallback (e.g. the user's Cancel).
        progress: called as progress(done_frames, total_frames).

    Returns:
        (frames [B, H, W, C], changed [B, H, W], report dict: per track its frames detected / interpolated /
        anonymized / blurred / exempt / lost, and the errors that triggered a fallback).
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    b, h, w = (int(v) for v in frames.shape[:3])
    if b != tracks.frame_count or (h, w) != tuple(tracks.image_size):
        raise ValueError(
            f"the tracks were made on a clip of {tracks.frame_count} frame(s) of {tracks.image_size[1]}x"
            f"{tracks.image_size[0]}, but the frames given are {b} frame(s) of {w}x{h}: connect the same IMAGE "
            "batch to Track Faces and to the anonymizer (frames of another size or count cannot use these tracks)")
    plan_of = {p.track: p for p in plans}
    missing = [t.id for t in tracks if t.id not in plan_of]
    if missing:
        raise ValueError(f"no plan for track(s) {missing}")
    exempt = [t.id for t in tracks if not plan_of[t.id].anonymize]
    out = frames.clone()
    changed = torch.zeros(b, h, w, device=frames.device)
    log = _Log()
    for start in range(0, b, chunk_frames):
        idx = list(range(start, min(start + chunk_frames, b)))
        faces, ids = tracks.faces(frames=idx, exclude=exempt)
        if len(faces):
            failed: list[tuple[int, int, str]] = []  # (face number in chunk, track, why)
            try:
                images, mask = render(frames[idx[0]:idx[-1] + 1], faces, ids)
                if images.shape != frames[idx[0]:idx[-1] + 1].shape:
                    raise RuntimeError(f"the anonymizer returned shape {tuple(images.shape)} for frames of shape "
                                       f"{tuple(frames[idx[0]:idx[-1] + 1].shape)}")
            except passthrough_errors:
                raise
            except Exception as e:  # noqa: BLE001 - turned into the user's fallback or re-raised below
                images, mask = frames[idx[0]:idx[-1] + 1].clone(), torch.zeros(len(idx), h, w)
                failed = [(k, tid, f"{type(e).__name__}: {e}") for k, tid in enumerate(ids)]
            else:
                for k, (face, tid) in enumerate(zip(faces, ids, strict=True)):
                    i = face.image_index
                    if not bool(torch.isfinite(images[i]).all()):
                        failed.append((k, tid, "non-finite pixels in the result"))
                    elif not _covered(face, mask[i], min_coverage):
                        failed.append((k, tid, "the changed region does not cover the face"))
            if failed and fallback == "stop":
                k, tid, why = failed[0]
                raise RuntimeError(
                    f"FaceAnon video: the face of track {tid} in frame {idx[faces[k].image_index]} could not be "
                    f"anonymized ({why}); {len(failed)} face(s) of frames {idx[0]}-{idx[-1]} failed. Nothing was "
                    "passed through. Set fallback to 'blur' to blur such faces strongly instead of stopping.")
            bad = {k for k, _, _ in failed}
            for k, tid, why in failed:
                i = faces[k].image_index
                images[i], m = blur_box(images[i], faces[k].box)
                mask[i] = torch.maximum(mask[i].to(m.device), m)
                log.blurred.setdefault(tid, []).append(idx[i])
                log.errors.append(f"track {tid}, frame {idx[i]}: {why} -> blurred")
            for k, (face, tid) in enumerate(zip(faces, ids, strict=True)):
                if k not in bad:
                    log.anonymized.setdefault(tid, []).append(idx[face.image_index])
            out[idx[0]:idx[-1] + 1] = images.to(out.device, out.dtype)
            changed[idx[0]:idx[-1] + 1] = mask.to(changed.device, changed.dtype)
        if progress is not None:
            progress(idx[-1] + 1, b)
    report = {"frames": b, "size": [w, h], "cuts": list(tracks.cuts), "chunk_frames": chunk_frames,
              "fallback": fallback, "tracks": [], "errors": log.errors}
    for t in tracks:
        p = plan_of[t.id]
        report["tracks"].append({
            "track": t.id, "scene": t.scene, "first": t.first, "last": t.last,
            "detected": list(t.detected), "interpolated": sorted(t.interpolated), "lost": list(t.lost),
            "anonymized": sorted(log.anonymized.get(t.id, [])), "blurred": sorted(log.blurred.get(t.id, [])),
            "exempt": [] if p.anonymize else list(t.frames), "decision": p.reason})
    return out, changed, report


def format_video_report(report: dict) -> str:
    """The report as text: one block per track, loud lines for blurred and lost frames."""
    tracks = report["tracks"]
    n_anon = sum(1 for t in tracks if t["anonymized"] or t["blurred"])
    lines = [f"FaceAnon video: {report['frames']} frame(s) {report['size'][0]}x{report['size'][1]}, "
             f"{len(tracks)} track(s), {n_anon} anonymized, {len(tracks) - n_anon} exempt"]
    if report["cuts"]:
        lines.append(f"  scene cuts before frame(s) {', '.join(map(str, report['cuts']))}")
    for t in tracks:
        seed = f", seed {t['seed']}" if "seed" in t else ""
        head = f"  track {t['track']} (frames {t['first']}-{t['last']}{seed}): {t['decision']}"
        lines.append(head)
        parts = [f"seen in {format_ranges(t['detected']) or 'no frame'}"]
        if t["interpolated"]:
            parts.append(f"interpolated in {format_ranges(t['interpolated'])}")
        if t["anonymized"]:
            parts.append(f"anonymized in {format_ranges(t['anonymized'])}")
        if t["exempt"]:
            parts.append(f"EXEMPT (kept as is) in {format_ranges(t['exempt'])}")
        lines.append("    " + "; ".join(parts))
        if t["blurred"]:
            lines.append(f"    WARNING: anonymization failed, BLURRED in frame(s) {format_ranges(t['blurred'])}")
        if t["lost"]:
            lines.append("    WARNING: face lost beyond the interpolation window in frame(s) "
                         f"{format_ranges(t['lost'])} (not covered by this track: check these frames)")
    lines.extend(f"  {e}" for e in report["errors"][:20])
    return "\n".join(lines)
