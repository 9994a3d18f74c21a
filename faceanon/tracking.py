"""Face tracking across the frames of a clip: one track per person, so one stand-in per person.

The steps, each a small function that the nodes and the tests call on plain values:

- `scene_cuts(frames)`: the frames where a new shot starts, from the frames themselves (colour-histogram distance
  between consecutive frames). A cut ends every track.
- `track_faces(faces, frame_count)`: association of per-frame detections into tracks. Each frame's detections are
  matched to the scene's tracks by a cost that mixes box overlap (IoU with the track's predicted box) and ArcFace
  cosine similarity with the track's mean identity, solved by `scipy.optimize.linear_sum_assignment` (Hungarian
  method). A track that lost its face for longer than the interpolation window can still take it back by identity
  alone (a person who leaves and returns keeps the track). Gaps of at most `max_gap` frames inside a track are
  filled with linearly interpolated boxes, keypoints and landmarks (marked interpolated); longer gaps are reported
  as *lost*. Boxes, keypoints and landmarks are then smoothed with a zero-phase One-Euro filter so that crops and
  paste-back do not jitter.
- `track_video(detect, frames)`: detection every k-th frame (plus the first and last frame of every shot), then
  extra detection passes on the frames around every track's start and end, then `track_faces`.

One-Euro filter: Casiez, Roussel and Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input in
Interactive Systems", CHI 2012. Here it runs forwards then backwards over each track segment (the clip is known in
advance), which removes the filter's lag, and one smoothing factor per frame is shared by every coordinate of a
face (derived from the keypoints' speed), so the face's shape is not distorted.

Everything here is host-independent (numpy, scipy, torch for the frames) and immutable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .faces.types import Face, Faces

__all__ = ["Track", "Tracks", "box_iou", "one_euro", "scene_cuts", "track_faces", "track_video", "frame_histograms",
           "format_ranges", "keyframes"]

INTERPOLATED, DETECTED = "interpolated", "detected"


# ---------------------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Track:
    """One person in one shot.

    Attributes:
        id: the track number (0, 1, ... in order of first appearance; never reused within a clip).
        faces: one `Face` per frame where the track is present (`image_index` = frame), detected or interpolated,
            in frame order; boxes, keypoints and landmarks smoothed.
        interpolated: the frames whose face was interpolated (detector missed it or did not run there).
        lost: frames between two sightings of the track that were not filled because the gap was longer than
            the interpolation window (the face, if it was there, is NOT covered by this track).
        scene: index of the shot (0 = before the first cut).
    """

    id: int
    faces: tuple[Face, ...]
    interpolated: frozenset[int] = frozenset()
    lost: tuple[int, ...] = ()
    scene: int = 0

    @property
    def frames(self) -> tuple[int, ...]:
        return tuple(f.image_index for f in self.faces)

    @property
    def detected(self) -> tuple[int, ...]:
        return tuple(f.image_index for f in self.faces if f.image_index not in self.interpolated)

    @property
    def first(self) -> int:
        return self.faces[0].image_index

    @property
    def last(self) -> int:
        return self.faces[-1].image_index

    def embeddings(self) -> np.ndarray:
        """[M, D] the normalised ArcFace embeddings of the detected faces (M may be 0)."""
        embs = [f.embedding for f in self.faces if f.embedding is not None]
        return np.stack(embs).astype(np.float32) if embs else np.zeros((0, 512), np.float32)

    def identity(self) -> np.ndarray | None:
        """The track's identity: the normalised mean of its faces' normalised embeddings (None without any)."""
        embs = self.embeddings()
        if not len(embs):
            return None
        mean = embs.mean(0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Tracks:
    """Every track of a clip.

    Attributes:
        tracks: the tracks, by id.
        frame_count: number of frames of the clip.
        image_size: (height, width) of the frames.
        cuts: frames where a new shot starts (scene cuts), ascending, never 0.
        observed: frames on which the detector ran (every frame with detect_every 1).
        max_gap: the interpolation window that was used, in frames.
        model / embedding_model: the face analysis pack and recognizer that made the detections.
        notes: report lines about the run (settings, extra passes).
    """

    tracks: tuple[Track, ...]
    frame_count: int
    image_size: tuple[int, int]
    cuts: tuple[int, ...] = ()
    observed: tuple[int, ...] = ()
    max_gap: int = 0
    model: str = ""
    embedding_model: str = ""
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self):
        return iter(self.tracks)

    def faces(self, frames: Sequence[int] | None = None, exclude: Sequence[int] = ()) -> tuple[Faces, list[int]]:
        """The tracks' faces as `Faces` (frame by frame; `image_index` = frame) and, per face, its track id.

        `frames` restricts to those frames and renumbers them 0.. in the given order (a chunk of the clip);
        `exclude` leaves out whole tracks (e.g. exempt people).
        """
        order = list(range(self.frame_count)) if frames is None else list(frames)
        where = {f: i for i, f in enumerate(order)}
        rows = [(where[face.image_index], t.id, face) for t in self.tracks if t.id not in set(exclude)
                for face in t.faces if face.image_index in where]
        rows.sort(key=lambda r: (r[0], r[1]))
        faces = tuple(replace(face, image_index=i) for i, _, face in rows)
        present = {i for i, _, _ in rows}
        out = Faces(faces=faces, image_size=self.image_size, batch_size=len(order),
                    missing=tuple(i for i in range(len(order)) if i not in present), model=self.model,
                    embedding_model=self.embedding_model)
        return out, [tid for _, tid, _ in rows]

    def scene_of(self, frame: int) -> int:
        return int(np.searchsorted(np.asarray(self.cuts, dtype=np.int64), frame, side="right"))

    def summary(self) -> list[dict]:
        """Per track: id, scene, first/last frame, frames seen / interpolated / lost (JSON-ready)."""
        return [{"track": t.id, "scene": t.scene, "first": t.first, "last": t.last,
                 "detected": list(t.detected), "interpolated": sorted(t.interpolated), "lost": list(t.lost)}
                for t in self.tracks]

    @property
    def report(self) -> str:
        lines = [f"{len(self.tracks)} track(s) in {self.frame_count} frame(s), {len(self.cuts) + 1} shot(s)"
                 + (f" (cuts before frame(s) {', '.join(map(str, self.cuts))})" if self.cuts else "")
                 + f"; detector ran on {len(self.observed)} frame(s); interpolation window {self.max_gap} frame(s)"]
        lines.extend(self.notes)
        for t in self.tracks:
            line = (f"  track {t.id} (shot {t.scene}): frames {t.first}-{t.last}, detected in {len(t.detected)}, "
                    f"interpolated in {len(t.interpolated)}")
            if t.interpolated:
                line += f" ({format_ranges(sorted(t.interpolated))})"
            if t.lost:
                line += f"; LOST beyond the window in frame(s) {format_ranges(t.lost)}"
            lines.append(line)
        empty = [i for i in range(self.frame_count) if not any(i in set(t.frames) for t in self.tracks)]
        if empty:
            lines.append(f"  no face in frame(s) {format_ranges(empty)}")
        return "\n".join(lines)


def format_ranges(frames: Sequence[int]) -> str:
    """'3-5, 9' for [3, 4, 5, 9]."""
    out, start, prev = [], None, None
    for f in frames:
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            out.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = f
    if start is not None:
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ", ".join(out)


# ---------------------------------------------------------------------------------------------------------------
# scene cuts
# ---------------------------------------------------------------------------------------------------------------
def frame_histograms(frames: torch.Tensor, bins: int = 8, size: int = 64) -> torch.Tensor:
    """[B, bins**3] normalised RGB histograms of frames downsampled to about `size` pixels (area average)."""
    x = frames[..., :3].float().movedim(-1, 1)
    x = torch.nn.functional.adaptive_avg_pool2d(x, (min(size, x.shape[2]), min(size, x.shape[3])))
    q = (x.clamp(0, 1) * (bins - 1e-4)).long()
    index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = torch.zeros(x.shape[0], bins ** 3)
    hist.scatter_add_(1, index.flatten(1).cpu(), torch.ones(index.flatten(1).shape))
    return hist / hist.sum(1, keepdim=True)


def scene_cuts(frames: torch.Tensor, threshold: float = 0.5) -> list[int]:
    """Frames where a new shot starts.

    Args:
        frames: [B, H, W, C] float 0..1, in order.
        threshold: a cut is declared where the total-variation distance between consecutive frames' colour
            histograms (0 = same colours, 1 = no colour in common) exceeds this. Faces moving over the same
            background stay far below 0.3; a change of location is usually above 0.6. 1 turns detection off.

    Returns:
        Ascending frame indices i >= 1 such that frame i starts a new shot.
    """
    if frames.shape[0] < 2 or threshold >= 1.0:
        return []
    hist = frame_histograms(frames)
    distance = 0.5 * (hist[1:] - hist[:-1]).abs().sum(1)
    return [int(i) + 1 for i in torch.nonzero(distance > threshold).flatten()]


# ---------------------------------------------------------------------------------------------------------------
# association
# ---------------------------------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] intersection over union of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Open:
    """A track being built (mutable, private to `track_faces`)."""

    id: int
    scene: int
    faces: list[Face]
    emb_sum: np.ndarray | None = None

    def predicted_box(self, frame: int) -> np.ndarray:
        """Constant-velocity prediction from the last two sightings (the last box when there is one)."""
        last = self.faces[-1]
        if len(self.faces) < 2:
            return last.box
        prev = self.faces[-2]
        dt = max(last.image_index - prev.image_index, 1)
        velocity = (last.box - prev.box) / dt
        return last.box + velocity * min(frame - last.image_index, 2 * dt)

    def identity(self) -> np.ndarray | None:
        if self.emb_sum is None:
            return None
        return self.emb_sum / max(float(np.linalg.norm(self.emb_sum)), 1e-12)

    def add(self, face: Face) -> None:
        self.faces.append(face)
        if face.embedding is not None:
            e = face.embedding.astype(np.float64)
            self.emb_sum = e if self.emb_sum is None else self.emb_sum + e


def _cost(tracks: list[_Open], faces: Sequence[Face], frame: int, iou_weight: float, min_iou: float,
          min_similarity: float, reid_similarity: float, max_gap: int) -> np.ndarray:
    """[T, D] assignment cost (1 - weighted IoU/similarity score); np.inf where the pair is not allowed.

    Allowed: boxes overlap (IoU >= min_iou, within max_gap + 1 frames of the track's last sighting) and the
    identities do not contradict it (similarity >= min_similarity when both have one), or, at any distance in
    time or space, the identities agree strongly (similarity >= reid_similarity).
    """
    cost = np.full((len(tracks), len(faces)), np.inf)
    if not tracks or not faces:
        return cost
    iou = box_iou(np.stack([t.predicted_box(frame) for t in tracks]), np.stack([f.box for f in faces]))
    for i, t in enumerate(tracks):
        ident = t.identity()
        near = frame - t.faces[-1].image_index <= max_gap + 1
        for j, f in enumerate(faces):
            sim = None if ident is None or f.embedding is None else float(np.dot(ident, f.embedding))
            by_box = near and iou[i, j] >= min_iou and (sim is None or sim >= min_similarity)
            by_identity = sim is not None and sim >= reid_similarity
            if by_box or by_identity:
                score = iou_weight * iou[i, j] * near + (1 - iou_weight) * (max(sim, 0.0) if sim is not None else
                                                                            iou[i, j])
                cost[i, j] = 1.0 - score
    return cost


def _interpolate(a: Face, b: Face, frame: int) -> Face:
    """The face at `frame` between sightings a and b: boxes, keypoints and landmarks linearly interpolated."""
    t = (frame - a.image_index) / (b.image_index - a.image_index)
    lerp = lambda x, y: ((1 - t) * x + t * y).astype(np.float32)  # noqa: E731
    landmarks = None if a.landmarks is None or b.landmarks is None else lerp(a.landmarks, b.landmarks)
    return Face(image_index=frame, box=lerp(a.box, b.box), score=min(a.score, b.score), kps=lerp(a.kps, b.kps),
                landmarks=landmarks, embedding=None)


def one_euro(values: np.ndarray, speed: np.ndarray, min_cutoff: float, beta: float) -> np.ndarray:
    """One causal One-Euro pass over a sequence (one sample per frame).

    Args:
        values: [T, K] the coordinates per frame.
        speed: [T] a speed per frame (pixels per frame) that raises the cutoff: fast motion is followed closely,
            slow jitter is smoothed.
        min_cutoff: cutoff frequency at rest, in cycles per frame (0.5 = no smoothing at all).
        beta: cutoff increase per pixel per frame of speed.

    Returns:
        [T, K] filtered values (the first sample is kept as is).
    """
    out = np.array(values, dtype=np.float64, copy=True)
    for i in range(1, len(out)):
        cutoff = min_cutoff + beta * float(speed[i])
        tau = 1.0 / (2 * np.pi * cutoff)
        alpha = 1.0 / (1.0 + tau)  # sampling period of one frame
        out[i] = alpha * out[i] + (1 - alpha) * out[i - 1]
    return out


def _smooth(faces: list[Face], strength: float) -> list[Face]:
    """Zero-phase One-Euro smoothing of boxes, keypoints and landmarks over consecutive frames."""
    if strength <= 0 or len(faces) < 3:
        return faces
    min_cutoff = 0.25 * (1.0 - strength) + 0.01
    beta = 0.01
    lmk = all(f.landmarks is not None for f in faces)
    parts = [np.stack([f.box for f in faces]), np.stack([f.kps.reshape(-1) for f in faces])]
    if lmk:
        parts.append(np.stack([f.landmarks.reshape(-1) for f in faces]))
    values = np.concatenate(parts, 1).astype(np.float64)
    kps = parts[1].reshape(len(faces), 5, 2)
    # the speed that opens the filter: the keypoints' mean motion, low-passed (One-Euro's derivative cutoff)
    step = np.r_[0.0, np.linalg.norm(np.diff(kps.mean(1), axis=0), axis=1)]
    speed = one_euro(step[:, None], np.zeros(len(step)), 0.1, 0.0)[:, 0]
    # odd (point-reflected) padding at both ends, as filtfilt does: a straight motion continues straight, so the
    # filter has no start-up transient at the ends of the track
    pad = min(len(faces) - 1, 20)
    padded = np.concatenate([2 * values[0] - values[pad:0:-1], values, 2 * values[-1] - values[-2:-pad - 2:-1]])
    speed = np.concatenate([speed[pad:0:-1], speed, speed[-2:-pad - 2:-1]])
    forward = one_euro(padded, speed, min_cutoff, beta)
    both = one_euro(forward[::-1], speed[::-1], min_cutoff, beta)[::-1][pad:pad + len(faces)]
    out = []
    for i, f in enumerate(faces):
        row = both[i].astype(np.float32)
        out.append(replace(f, box=row[:4], kps=row[4:14].reshape(5, 2),
                           landmarks=row[14:].reshape(-1, 2) if lmk else f.landmarks))
    return out


def track_faces(
    faces: Faces | Sequence[Face],
    frame_count: int,
    *,
    image_size: tuple[int, int] | None = None,
    cuts: Sequence[int] = (),
    observed: Sequence[int] | None = None,
    iou_weight: float = 0.5,
    min_iou: float = 0.2,
    min_similarity: float = 0.2,
    reid_similarity: float = 0.5,
    max_gap: int = 8,
    smoothing: float = 0.5,
    notes: Sequence[str] = (),
) -> Tracks:
    """Group per-frame detections into tracks.

    Args:
        faces: the detections, `image_index` = frame (frames in any order; frames without detections are fine).
        frame_count: number of frames of the clip.
        image_size: (height, width); taken from `faces` when it is a `Faces`.
        cuts: frames that start a new shot (`scene_cuts`): no track crosses a cut.
        observed: frames the detector ran on (default: all). Only used for the report.
        iou_weight: weight of box overlap against identity similarity in the assignment score (0..1).
        min_iou: smallest IoU between a track's predicted box and a detection to match by position.
        min_similarity: a position match is refused when the two ArcFace embeddings are less similar than this
            (two people crossing).
        reid_similarity: ArcFace cosine similarity above which a detection joins a track whatever its position
            or the time since the track was last seen (a person who leaves and comes back).
        max_gap: interpolation window: gaps of at most this many frames between two sightings are filled with
            interpolated faces; longer gaps are reported as lost.
        smoothing: 0 = raw detections; up to 1 = strongest One-Euro smoothing of boxes, keypoints, landmarks.
        notes: report lines to carry.

    Returns:
        Tracks, numbered in order of first appearance.
    """
    from scipy.optimize import linear_sum_assignment

    if frame_count < 1:
        raise ValueError(f"tracking needs at least one frame, got frame_count={frame_count}")
    if not 0.0 <= iou_weight <= 1.0:
        raise ValueError(f"iou_weight must be between 0 and 1, got {iou_weight}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0 frames, got {max_gap}")
    model = embedding_model = ""
    if isinstance(faces, Faces):
        image_size = image_size or faces.image_size
        model, embedding_model = faces.model, faces.embedding_model
    if image_size is None:
        raise ValueError("track_faces needs image_size when `faces` is a plain list")
    by_frame: dict[int, list[Face]] = {}
    for f in faces:
        if not 0 <= f.image_index < frame_count:
            raise ValueError(f"a face is in frame {f.image_index}, outside the clip's {frame_count} frame(s)")
        by_frame.setdefault(f.image_index, []).append(f)
    cut_set = sorted(set(int(c) for c in cuts if 0 < c < frame_count))
    scene_of = lambda frame: int(np.searchsorted(cut_set, frame, side="right"))  # noqa: E731
    done: list[_Open] = []
    active: list[_Open] = []
    next_id = 0
    for frame in sorted(by_frame):
        scene = scene_of(frame)
        if active and active[0].scene != scene:
            done += active
            active = []
        dets = by_frame[frame]
        cost = _cost(active, dets, frame, iou_weight, min_iou, min_similarity, reid_similarity, max_gap)
        matched: set[int] = set()
        if active and dets:
            finite = np.where(np.isfinite(cost), cost, 1e6)
            for i, j in zip(*linear_sum_assignment(finite), strict=True):
                if np.isfinite(cost[i, j]):
                    active[i].add(dets[j])
                    matched.add(int(j))
        for j, f in enumerate(dets):
            if j not in matched:
                t = _Open(id=next_id, scene=scene, faces=[])
                t.add(f)
                active.append(t)
                next_id += 1
    done += active
    tracks = []
    for t in sorted(done, key=lambda t: t.id):
        filled: list[Face] = []
        interpolated: set[int] = set()
        lost: list[int] = []
        segments: list[list[Face]] = []
        for a, b in zip(t.faces, t.faces[1:] + [None], strict=True):
            filled.append(a)
            if b is None:
                break
            gap = b.image_index - a.image_index - 1
            if gap <= max_gap:
                for frame in range(a.image_index + 1, b.image_index):
                    filled.append(_interpolate(a, b, frame))
                    interpolated.add(frame)
            else:
                lost += range(a.image_index + 1, b.image_index)
                segments.append(filled)
                filled = []
        segments.append(filled)
        smoothed = [face for seg in segments for face in _smooth(seg, smoothing)]
        tracks.append(Track(id=t.id, faces=tuple(smoothed), interpolated=frozenset(interpolated), lost=tuple(lost),
                            scene=t.scene))
    return Tracks(tracks=tuple(tracks), frame_count=frame_count, image_size=tuple(image_size), cuts=tuple(cut_set),
                  observed=tuple(sorted(by_frame if observed is None else observed)), max_gap=max_gap, model=model,
                  embedding_model=embedding_model, notes=tuple(notes))


# ---------------------------------------------------------------------------------------------------------------
# detect every k-th frame, with extra passes where tracks start and end
# ---------------------------------------------------------------------------------------------------------------
def keyframes(frame_count: int, detect_every: int, cuts: Sequence[int] = ()) -> list[int]:
    """Frames the detector runs on first: every k-th frame of each shot, and each shot's first and last frame."""
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    bounds = [0, *sorted(c for c in cuts if 0 < c < frame_count), frame_count]
    frames: set[int] = set()
    for start, end in zip(bounds, bounds[1:], strict=False):
        frames.update(range(start, end, detect_every))
        frames.add(end - 1)
    return sorted(frames)


def track_video(
    detect: Callable[[list[int]], Sequence[Face]],
    frames: torch.Tensor,
    *,
    detect_every: int = 1,
    scene_threshold: float = 0.5,
    max_gap: int = 8,
    extra_passes: int = 2,
    **association,
) -> Tracks:
    """Detect and track the faces of a clip.

    Args:
        detect: called with a list of frame indices, returns the faces found in them (`image_index` = frame).
        frames: [B, H, W, C] the clip (for scene cuts and its size).
        detect_every: run the detector on every k-th frame of each shot (and the shot's first and last frame); the
            frames between are interpolated. Where a track starts or ends, the detector also runs on the skipped
            frames next to it (up to `extra_passes` rounds), so a face is not missed at the edges.
        scene_threshold: see `scene_cuts` (1 = no cut detection).
        max_gap: interpolation window in frames; raised to detect_every - 1 when smaller (the skipped frames
            between two detector runs must be filled).
        association: passed on to `track_faces` (iou_weight, min_iou, min_similarity, reid_similarity, smoothing).
    """
    b = int(frames.shape[0])
    if b < 1:
        raise ValueError("the clip has no frames")
    cuts = scene_cuts(frames, scene_threshold)
    window = max(max_gap, detect_every - 1)
    observed = keyframes(b, detect_every, cuts)
    found = list(detect(observed))
    size = (int(frames.shape[1]), int(frames.shape[2]))
    notes = []
    tracks = track_faces(found, b, image_size=size, cuts=cuts, observed=observed, max_gap=window, **association)
    if detect_every > 1:
        seen = set(observed)
        for round_ in range(extra_passes):
            extra: set[int] = set()
            for t in tracks:
                lo = max((c for c in [0, *cuts] if c <= t.first), default=0)
                hi = min((c for c in [*cuts, b] if c > t.last), default=b)
                # segment edges: the track's first and last frame, and both sides of every lost gap
                starts = [t.first] + [f + 1 for f in t.lost if f + 1 not in set(t.lost)]
                ends = [t.last] + [f - 1 for f in t.lost if f - 1 not in set(t.lost)]
                for s in starts:
                    extra.update(range(max(lo, s - detect_every + 1), s))
                for e in ends:
                    extra.update(range(e + 1, min(hi, e + detect_every)))
            extra -= seen
            if not extra:
                break
            more = sorted(extra)
            found += list(detect(more))
            seen.update(more)
            notes.append(f"extra detection pass {round_ + 1} at track starts/ends: frame(s) {format_ranges(more)}")
            tracks = track_faces(found, b, image_size=size, cuts=cuts, observed=sorted(seen), max_gap=window,
                                 **association)
        tracks = replace(tracks, notes=tuple(notes))
    return tracks
