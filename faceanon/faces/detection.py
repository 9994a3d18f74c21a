"""Finding every face of every image: multi-scale scan plan, SCRFD passes, NMS, landmarks, embeddings.

    scan_plan(height, width, det_size, min_face_size) -> list[ScanPass]
    detect(analysis, images, ...) -> Faces
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._image import as_bhwc, rgb, to_bgr_uint8
from .errors import NoFaceError
from .identity import arcface_embeddings
from .loading import NMS_IOU, FaceAnalysis
from .types import ORDERS, Face, Faces, _order_key

# A real SCRFD finds faces from about 10-16 px (its smallest anchors are 16 px at stride 8) up to about half its
# input. The scan plan makes every wanted face at least this large in some detector pass.
DETECTOR_MIN_FACE = 16
# The coarse pass catches faces that fill most of the frame (insightface 2.1 does the same with a 128 px pass).
COARSE_SIZE = 128
MAX_TILES = 256



class IfNoFace(enum.Enum):
    """What `detect` does with an image in which no face is found."""

    ERROR = "error"  # raise NoFaceError naming every such image and what was tried
    FLAG = "flag"  # list it in `Faces.missing` (and the report): passed through, flagged NOT anonymized


@dataclass(frozen=True)
class ScanPass:
    """One detector pass: the image scaled by `scale`, cut into `tiles` (x, y, w, h in scaled pixels) that are
    each fed to the detector on a `canvas` x `canvas` input (zero padded right/bottom)."""

    kind: str  # "global", "coarse" or "tiles"
    scale: float
    canvas: int
    scaled_size: tuple[int, int]  # (width, height)
    tiles: tuple[tuple[int, int, int, int], ...]


def _letterbox(height: int, width: int, canvas: int) -> tuple[int, int, float]:
    """insightface's fit-into-canvas arithmetic: (new_w, new_h, scale) so detections match FaceAnalysis."""
    im_ratio = height / width
    if im_ratio > 1:
        new_h = canvas
        new_w = max(1, int(new_h / im_ratio))
    else:
        new_w = canvas
        new_h = max(1, int(new_w * im_ratio))
    return new_w, new_h, new_h / height


def _axis_tiles(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / step) + 1
    return sorted({min(i * step, length - tile) for i in range(n)})


def scan_plan(height: int, width: int, det_size: int = 640, min_face_size: float = 24) -> list[ScanPass]:
    """The detector passes that find faces from `min_face_size` pixels up to the whole frame.

    - "global": the whole image fitted into det_size (what insightface does);
    - "coarse": the whole image fitted into 128 px, for faces that fill the frame;
    - "tiles": only when the global pass would shrink a `min_face_size` face below what SCRFD can see
      (`DETECTOR_MIN_FACE` px): the image is scaled so that such a face is big enough (at most 2x up) and cut
      into det_size tiles; coarser tile levels (x1/4) are added until the global pass covers the rest. Tiles
      overlap by enough to hold, whole, every face too small for the next coarser pass (at most a quarter tile).
      Total tiles are capped at `MAX_TILES` by raising the finest scale.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    passes = []
    gw, gh, g = _letterbox(height, width, det_size)
    passes.append(ScanPass("global", g, det_size, (gw, gh), ((0, 0, gw, gh),)))
    cw, ch, c = _letterbox(height, width, COARSE_SIZE)
    passes.append(ScanPass("coarse", c, COARSE_SIZE, (cw, ch), ((0, 0, cw, ch),)))
    want = min(2.0, DETECTOR_MIN_FACE / max(float(min_face_size), 1.0))
    levels = []
    s = want
    while s > g * 1.25:
        levels.append(s)
        s /= 4

    def tiles_at(i, scale, lv):
        coarser = lv[i + 1] if i + 1 < len(lv) else g
        # a face the coarser pass misses is < DETECTOR_MIN_FACE / coarser px, i.e. this many px at this scale
        overlap = min(det_size // 4, math.ceil(1.3 * DETECTOR_MIN_FACE * scale / coarser) + 16)
        step = det_size - overlap
        sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
        xs, ys = _axis_tiles(sw, det_size, step), _axis_tiles(sh, det_size, step)
        return sw, sh, tuple((x, y, min(det_size, sw - x), min(det_size, sh - y)) for y in ys for x in xs)

    while levels and sum(len(tiles_at(i, s, levels)[2]) for i, s in enumerate(levels)) > MAX_TILES:
        levels = [lv * 0.8 for lv in levels if lv * 0.8 > g * 1.25]
    for i, s in enumerate(levels):
        sw, sh, tiles = tiles_at(i, s, levels)
        passes.append(ScanPass("tiles", s, det_size, (sw, sh), tiles))
    return passes


def describe_plan(plan: Sequence[ScanPass]) -> str:
    parts = []
    for p in plan:
        if p.kind == "tiles":
            parts.append(f"{len(p.tiles)} tiles of {p.canvas}px at scale {p.scale:.3g} "
                         f"(faces down to ~{DETECTOR_MIN_FACE / p.scale:.0f}px)")
        else:
            parts.append(f"{p.kind} pass at {p.canvas}px (scale {p.scale:.3g})")
    return "; ".join(parts)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS with insightface's +1 area convention, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        order = rest[ovr <= iou]
    return keep


def _resize(bgr: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if (w, h) == (bgr.shape[1], bgr.shape[0]):
        return bgr
    shrink = w / bgr.shape[1]
    return cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA if shrink < 0.5 else cv2.INTER_LINEAR)


def _run_pass(det, bgr: np.ndarray, p: ScanPass, threshold: float, source: np.ndarray | None = None):
    """Detections of one pass in full-image pixels; `source` is an already-scaled copy to resize from."""
    height, width = bgr.shape[:2]
    sw, sh = p.scaled_size
    scaled = _resize(bgr if source is None else source, sw, sh)
    if p.kind == "tiles":
        sx, sy = sw / width, sh / height
    else:
        sx = sy = p.scale
    boxes, scores, kpss = [], [], []
    for x0, y0, tw, th in p.tiles:
        canvas = np.zeros((p.canvas, p.canvas, 3), np.uint8)
        canvas[:th, :tw] = scaled[y0:y0 + th, x0:x0 + tw]
        s_list, b_list, k_list = det.forward(canvas, threshold)
        if not s_list or sum(len(s) for s in s_list) == 0:
            continue
        sc = np.vstack(s_list)[:, 0]
        bx = np.vstack(b_list).astype(np.float64)
        kp = np.vstack(k_list).reshape(-1, 5, 2).astype(np.float64)
        if p.kind == "tiles":
            # a face cut by an inner tile edge is found whole in a neighbouring tile (or a coarser pass)
            edge = 2.0
            ok = np.ones(len(sc), bool)
            if x0 > 0:
                ok &= bx[:, 0] > edge
            if y0 > 0:
                ok &= bx[:, 1] > edge
            if x0 + tw < sw:
                ok &= bx[:, 2] < tw - 1 - edge
            if y0 + th < sh:
                ok &= bx[:, 3] < th - 1 - edge
            sc, bx, kp = sc[ok], bx[ok], kp[ok]
        bx[:, [0, 2]] = (bx[:, [0, 2]] + x0) / sx
        bx[:, [1, 3]] = (bx[:, [1, 3]] + y0) / sy
        kp[..., 0] = (kp[..., 0] + x0) / sx
        kp[..., 1] = (kp[..., 1] + y0) / sy
        boxes.append(bx)
        scores.append(sc)
        kpss.append(kp)
    return boxes, scores, kpss, scaled


def _detect_one(analysis: FaceAnalysis, bgr: np.ndarray, plan: Sequence[ScanPass], threshold: float):
    boxes, scores, kpss = [], [], []
    global_scaled = None
    for p in plan:
        # the coarse pass of a large photo resizes the global pass's image (same result, far less work)
        source = global_scaled if p.kind == "coarse" and max(bgr.shape[:2]) > 2 * analysis.det_size else None
        b, s, k, scaled = _run_pass(analysis.detector, bgr, p, threshold, source)
        if p.kind == "global":
            global_scaled = scaled
        boxes += b
        scores += s
        kpss += k
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    boxes, scores, kpss = np.concatenate(boxes), np.concatenate(scores), np.concatenate(kpss)
    keep = _nms(boxes, scores, NMS_IOU)
    return boxes[keep], scores[keep], kpss[keep]


def _landmarks(analysis: FaceAnalysis, bgr: np.ndarray, box: np.ndarray, kps: np.ndarray, score: float):
    from insightface.app.common import Face as InsightFace

    f = InsightFace(bbox=np.asarray(box, np.float32), kps=np.asarray(kps, np.float32), det_score=float(score))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pts = analysis.landmark.get(bgr, f)
    return np.asarray(pts, np.float32)[:, :2]


def detect(
    analysis: FaceAnalysis,
    images: torch.Tensor,
    *,
    threshold: float = 0.5,
    min_face_size: float = 24,
    max_faces: int = 0,
    order: str = "largest first",
    landmarks: bool = True,
    embeddings: bool = True,
    if_no_face: IfNoFace = IfNoFace.ERROR,
    progress: Callable[[int, int], None] | None = None,
) -> Faces:
    """Find every face of every image.

    Args:
        analysis: a loaded FaceAnalysis.
        images: [B, H, W, C] float 0..1 (C = 1 grey, 2 grey+alpha, 3 RGB or 4 RGBA; alpha is ignored).
        threshold: detector score threshold (0..1); lower finds more faces and more false ones.
        min_face_size: smallest face to find, in pixels (longer box side). Large photos are scanned in tiles so
            that faces this small are found; smaller detections are dropped (and counted in the notes).
        max_faces: keep at most this many faces per image, the largest ones (0 = all). Dropped faces are
            counted in the notes: they will not be anonymized.
        order: order of the faces within an image, one of `ORDERS`.
        landmarks: compute 106-point landmarks when the pack has the model.
        embeddings: compute the normalised ArcFace embedding of every face.
        if_no_face: `IfNoFace.ERROR` raises NoFaceError naming every image without a face and what was tried;
            `IfNoFace.FLAG` records them in `Faces.missing` (and the report) instead.
        progress: called as progress(done_images, total_images) after each image (the node layer ticks its
            progress bar and checks for interruption there).

    Returns:
        Faces (image by image, each image's faces in `order`).
    """
    try:
        if_no_face = IfNoFace(if_no_face)
    except ValueError:
        raise ValueError(f"if_no_face must be one of {', '.join(repr(p.value) for p in IfNoFace)} (IfNoFace), got "
                         f"{if_no_face!r}") from None
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    images = as_bhwc(images)
    b, h, w, _ = images.shape
    plan = scan_plan(h, w, analysis.det_size, min_face_size)
    want_lmk = landmarks and analysis.landmark is not None
    want_emb = embeddings and analysis.recognizer is not None
    faces: list[Face] = []
    notes: list[str] = []
    missing: list[int] = []
    key = _order_key(order)
    for i in range(b):
        bgr = to_bgr_uint8(rgb(images[i]))
        boxes, scores, kpss = _detect_one(analysis, bgr, plan, threshold)
        sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
        small = sizes < min_face_size
        n_small = int(small.sum())
        boxes, scores, kpss = boxes[~small], scores[~small], kpss[~small]
        n_found = len(boxes)
        if max_faces and n_found > max_faces:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            top = np.argsort(-areas, kind="stable")[:max_faces]
            boxes, scores, kpss = boxes[top], scores[top], kpss[top]
        embs = arcface_embeddings(analysis, bgr, kpss) if want_emb and len(boxes) else [None] * len(boxes)
        image_faces = []
        for j in range(len(boxes)):
            lmk = _landmarks(analysis, bgr, boxes[j], kpss[j], scores[j]) if want_lmk else None
            image_faces.append(Face(image_index=i, box=boxes[j].astype(np.float32), score=float(scores[j]),
                                    kps=kpss[j].astype(np.float32), landmarks=lmk, embedding=embs[j]))
        image_faces.sort(key=key)
        faces += image_faces
        note = f"image {i}: {len(image_faces)} face(s)"
        if image_faces:
            note += " (scores " + ", ".join(f"{f.score:.2f}" for f in image_faces) + ")"
        if n_small:
            note += f"; {n_small} smaller than min_face_size {min_face_size:g}px ignored"
        if max_faces and n_found > max_faces:
            note += f"; {n_found - max_faces} more face(s) beyond max_faces={max_faces} NOT kept"
        if not image_faces:
            missing.append(i)
            note += " - NO FACE FOUND"
        notes.append(note)
        if progress is not None:
            progress(i + 1, b)
    if missing and if_no_face is IfNoFace.ERROR:
        raise NoFaceError(
            f"no face found in image(s) {', '.join(map(str, missing))} of the batch of {b} ({w}x{h}). Tried: "
            f"{analysis.files['detector'].name} of {analysis.name} at threshold {threshold:g}, min_face_size "
            f"{min_face_size:g}px: {describe_plan(plan)}. Lower the threshold or min_face_size, check the image, or "
            f"set if_no_face to 'flag and pass through' to let such images through marked as NOT anonymized."
        )
    return Faces(faces=tuple(faces), image_size=(h, w), batch_size=b, missing=tuple(missing), notes=tuple(notes),
                 model=analysis.name, embedding_model=analysis.embedding_model if want_emb else "")
