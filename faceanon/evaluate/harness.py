"""Per-face and per-image measurements, and the per-method summary.

Protocol (per original image):
1. detect the faces in the ORIGINAL (dlib HOG + mediapipe full-range, `models.FaceTools.detect`);
2. per face: dlib's 5 landmarks inside the box, the 128-D descriptor, and the mediapipe mesh of a crop around it;
3. per method (a results folder or a generated baseline), in the result image:
   - identity: the descriptor is taken inside the ORIGINAL face's box, never re-detected, so a face that no
     detector finds any more is still measured. The chip is aligned twice (on the original's landmarks, and on
     landmarks re-fitted inside the same box in the result) and the smaller distance is kept: the evaluation takes
     the attacker's best alignment. `reidentified` = distance < `threshold` (dlib's 0.6);
   - top-1 identification: is the nearest ORIGINAL face of the whole run (the gallery) the face's own identity
     (itself, or an original within `threshold` of it)? Meaningful only with a gallery of many identities;
   - detection: is there still a face at that place (IoU >= `match_iou` with a detection in the result)?
   - attributes: mediapipe mesh in the same crop -> pose, gaze and expression differences (`mesh.compare`);
   - quality: background PSNR/SSIM outside the (scaled) face boxes, sharpness ratio and change inside the box.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import EvaluationInputError, images, mesh, quality
from .baselines import BASELINES, BaselineSettings, apply_baseline
from .models import Box, FaceTools
from .thumbnails import tile_png

logger = logging.getLogger(__name__)

DLIB_THRESHOLD = 0.6
# Reference ranges for dlib distances, measured on the offline photo set (shared research eval_tools.md §5.2).
GENUINE_RANGE = (0.355, 0.418)  # the same person in three different photos
IMPOSTOR_RANGE = (0.629, 0.976)  # 63 pairs of different people

FACE_FIELDS = [
    "method", "image", "face", "x0", "y0", "x1", "y1", "det_score", "det_source",
    "id_distance", "reidentified", "top1_reidentified", "found_in_result", "mesh_original", "mesh_result",
    "yaw_diff_deg", "pitch_diff_deg", "roll_diff_deg", "pose_diff_deg", "gaze_diff", "ear_diff",
    "mouth_open_diff", "mouth_width_diff", "expr_diff", "sharpness_ratio", "face_mad",
]
IMAGE_FIELDS = [
    "method", "image", "status", "message", "width", "height", "result_file", "n_faces", "n_faces_found",
    "n_result_detections", "bg_psnr_db", "bg_ssim",
]
ATTRIBUTE_KEYS = ["yaw_diff_deg", "pitch_diff_deg", "roll_diff_deg", "pose_diff_deg", "gaze_diff", "ear_diff",
                  "mouth_open_diff", "mouth_width_diff", "expr_diff"]


@dataclass
class HarnessSettings:
    threshold: float = DLIB_THRESHOLD
    match_iou: float = 0.3
    resize_results: bool = False
    hog_min_score: float = 0.3
    mp_min_score: float = 0.6
    detect_max_side: int = 1024
    thumbnails: int = 24  # images shown in the HTML page (first N by name)
    thumb_height: int = 200
    baseline: BaselineSettings = field(default_factory=BaselineSettings)

    def make_tools(self) -> FaceTools:
        return FaceTools(hog_min_score=self.hog_min_score, mp_min_score=self.mp_min_score,
                         detect_max_side=self.detect_max_side)


@dataclass
class Method:
    name: str
    kind: str  # "results" or "baseline"
    source: Path | None = None  # the results folder
    description: str = ""


@dataclass
class EvaluationResult:
    methods: list[Method]
    faces: list[dict]
    images: list[dict]
    summary: dict
    thumbnails: list[dict]
    warnings: list[str]
    settings: HarnessSettings

    def problems(self) -> list[dict]:
        return [row for row in self.images if row["status"] != images.OK]


@dataclass
class _OriginalFace:
    box: Box
    shape: object  # dlib.full_object_detection
    descriptor: np.ndarray
    mesh: mesh.MeshFeatures | None


def build_methods(results: dict[str, Path], baselines: list[str], settings: HarnessSettings) -> list[Method]:
    methods = []
    for name, folder in results.items():
        methods.append(Method(name, "results", Path(folder), f"results in {folder}"))
    for name in baselines:
        if name not in BASELINES:
            raise EvaluationInputError(f"unknown baseline '{name}'; expected some of {', '.join(BASELINES)}")
        if name in results:
            raise EvaluationInputError(f"method name '{name}' is used by a results folder and a baseline; rename "
                                       "the results (NAME=FOLDER)")
        methods.append(Method(name, "baseline", None, settings.baseline.describe(name)))
    if not methods:
        raise EvaluationInputError("nothing to evaluate: give --results FOLDER and/or --baselines")
    return methods


def evaluate(originals_dir: Path, results: dict[str, Path] | None = None, baselines: list[str] | tuple = (),
             settings: HarnessSettings | None = None, tools: FaceTools | None = None,
             save_baselines_to: Path | None = None,
             progress: Callable[[int, int, str], None] | None = None, limit: int = 0) -> EvaluationResult:
    """Evaluate every results folder and baseline against the originals (the first `limit` by name when > 0).
    See the module docstring."""
    settings = settings or HarnessSettings()
    results = dict(results or {})
    methods = build_methods(results, list(baselines), settings)
    all_originals = images.list_images(Path(originals_dir), "originals")
    originals = all_originals[:limit] if limit > 0 else all_originals
    pairs_by_method: dict[str, dict[str, images.Pair]] = {}
    warnings: list[str] = []
    for m in methods:
        if m.kind == "results":
            pairs, unmatched = images.pair_images(all_originals, m.source)
            pairs_by_method[m.name] = {p.name: p for p in pairs}
            if unmatched:
                msg = (f"{m.name}: {len(unmatched)} result(s) without an original of the same name were ignored: "
                       f"{[p.name for p in unmatched[:5]]}")
                warnings.append(msg)
                logger.warning(msg)
    own_tools = tools is None
    tools = tools or settings.make_tools()

    face_rows: list[dict] = []
    image_rows: list[dict] = []
    thumbs: list[dict] = []
    gallery: list[np.ndarray] = []  # original descriptors, in face_key order
    gallery_keys: list[tuple[str, int]] = []
    result_desc: dict[tuple[str, str, int], np.ndarray] = {}  # (method, image, face) -> result descriptor

    try:
        for index, orig_path in enumerate(originals):
            name = orig_path.name
            if progress:
                progress(index, len(originals), name)
            logger.info("[%d/%d] %s", index + 1, len(originals), name)
            try:
                orig = images.read_image(orig_path)
            except EvaluationInputError as exc:
                for m in methods:
                    image_rows.append(_image_row(m.name, name, images.UNREADABLE, f"original: {exc}"))
                logger.warning("%s", exc)
                continue
            boxes = tools.detect(orig)
            if not boxes:
                msg = (f"no face found in the original ({orig.shape[1]}x{orig.shape[0]}); nothing to anonymize, so "
                       "the image is left out of the rates")
                for m in methods:
                    image_rows.append(_image_row(m.name, name, images.NO_FACE, msg, orig.shape))
                logger.warning("%s: %s", name, msg)
                continue
            faces = []
            for i, box in enumerate(boxes):
                shape = tools.landmarks5(orig, box)
                faces.append(_OriginalFace(box, shape, tools.descriptor(orig, shape), tools.mesh(orig, box)))
                gallery.append(faces[-1].descriptor)
                gallery_keys.append((name, i))
            orig_gray = quality.gray(orig)
            bg_mask = quality.background_mask(orig.shape, boxes)
            tiles = [("original", orig, boxes, [f"#{i}" for i in range(len(boxes))], [None] * len(boxes))] \
                if index < settings.thumbnails else None

            for m in methods:
                result, result_file, status, message = _result_image(m, name, orig, boxes, pairs_by_method,
                                                                     settings, save_baselines_to)
                if result is None:
                    image_rows.append(_image_row(m.name, name, status, message, orig.shape, len(boxes),
                                                 result_file=result_file))
                    logger.warning("%s / %s: %s", m.name, name, message)
                    continue
                found = tools.detect(result)
                res_gray = quality.gray(result)
                n_found = 0
                labels, flags = [], []
                for i, face in enumerate(faces):
                    row = _face_row(m.name, name, i, face, result, res_gray, orig, orig_gray, found, tools,
                                    settings)
                    result_desc[(m.name, name, i)] = row.pop("_descriptor")
                    n_found += int(row["found_in_result"])
                    face_rows.append(row)
                    labels.append(f"{row['id_distance']:.2f}")
                    flags.append(row["reidentified"])
                image_rows.append(_image_row(
                    m.name, name, status, message, orig.shape, len(boxes), n_found, len(found),
                    quality.background_psnr(orig, result, bg_mask), quality.background_ssim(orig_gray, res_gray,
                                                                                            bg_mask),
                    result_file=result_file))
                if tiles is not None:
                    tiles.append((m.name, result, boxes, labels, flags))
            if tiles is not None:
                thumbs.append({"image": name, "tiles": _thumbnail_tiles(tiles, settings.thumb_height)})
    finally:
        if own_tools:
            tools.close()

    if not gallery:
        problems = {row["status"] for row in image_rows}
        raise EvaluationInputError(
            f"no face was found in any of the {len(originals)} original(s) in '{originals_dir}' (statuses: "
            f"{sorted(problems)}); the harness measures faces, so give photos with visible faces "
            "(frontal or three-quarter, at least about 40 px wide)")
    chance = _top1(face_rows, gallery, gallery_keys, result_desc, settings.threshold)
    summary = summarize(methods, face_rows, image_rows, settings, len(gallery))
    summary["reid_top1_chance"] = chance
    return EvaluationResult(methods, face_rows, image_rows, summary, thumbs, warnings, settings)


def _result_image(m: Method, name: str, orig: np.ndarray, boxes: list[Box], pairs_by_method, settings,
                  save_to: Path | None):
    """(image or None, result file name, status, message)."""
    if m.kind == "baseline":
        result = apply_baseline(m.name, orig, boxes, settings.baseline)
        out_name = ""
        if save_to is not None:
            out = Path(save_to) / m.name / (Path(name).stem + ".png")
            images.write_image(out, result)
            out_name = str(out)
        return result, out_name, images.OK, ""
    pair = pairs_by_method[m.name][name]
    if pair.result is None:
        return None, "", images.MISSING_RESULT, (
            f"no result named like '{name}' in '{m.source}'; the original is NOT evaluated (a missing output "
            "may mean the pipeline failed on it)")
    try:
        result = images.read_image(pair.result)
    except EvaluationInputError as exc:
        return None, pair.result.name, images.UNREADABLE, f"result: {exc}"
    if result.shape[:2] != orig.shape[:2]:
        seen = f"{result.shape[1]}x{result.shape[0]}"
        want = f"{orig.shape[1]}x{orig.shape[0]}"
        if not settings.resize_results:
            return None, pair.result.name, images.SIZE_MISMATCH, (
                f"result '{pair.result.name}' is {seen} but original '{name}' is {want}; the harness compares "
                "pixel-aligned images, so save results at the original's size (the pack's paste-back does) or "
                "pass --resize-results to resize them")
        result = images.resize_to(result, orig.shape[:2])
        return result, pair.result.name, images.OK, f"resized from {seen} to {want}"
    return result, pair.result.name, images.OK, ""


def _face_row(method, name, i, face: _OriginalFace, result, res_gray, orig, orig_gray, found: list[Box],
              tools: FaceTools, settings: HarnessSettings) -> dict:
    box = face.box
    # identity inside the original box: original landmarks, and landmarks re-fitted in the result; keep the closer
    d_orig_align = tools.descriptor(result, face.shape)
    dist = float(np.linalg.norm(d_orig_align - face.descriptor))
    desc = d_orig_align
    own_shape = tools.landmarks5(result, box)
    moved = float(np.abs(_points(own_shape) - _points(face.shape)).max()) / max(1, box.width)
    if moved > 0.01:  # the re-fitted landmarks differ: try that alignment too (a sub-pixel move changes nothing)
        d_own_align = tools.descriptor(result, own_shape)
        dist_b = float(np.linalg.norm(d_own_align - face.descriptor))
        if dist_b < dist:
            desc, dist = d_own_align, dist_b
    res_mesh = tools.mesh(result, box)
    row = {
        "method": method, "image": name, "face": i, "x0": box.x0, "y0": box.y0, "x1": box.x1, "y1": box.y1,
        "det_score": box.score, "det_source": box.source,
        "id_distance": dist, "reidentified": dist < settings.threshold, "top1_reidentified": None,
        "found_in_result": any(box.iou(b) >= settings.match_iou for b in found),
        "mesh_original": face.mesh is not None, "mesh_result": res_mesh is not None,
        "sharpness_ratio": quality.sharpness_ratio(orig_gray, res_gray, box),
        "face_mad": quality.face_mad(orig, result, box),
        "_descriptor": desc,
    }
    if face.mesh is not None and res_mesh is not None:
        row.update(mesh.compare(face.mesh, res_mesh))
    else:
        row.update(dict.fromkeys(ATTRIBUTE_KEYS, float("nan")))
    return row


def _points(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _image_row(method, name, status, message, shape=None, n_faces=0, n_found=0, n_det=0, psnr=float("nan"),
               ssim=float("nan"), result_file="") -> dict:
    return {
        "method": method, "image": name, "status": status, "message": message,
        "width": shape[1] if shape is not None else None, "height": shape[0] if shape is not None else None,
        "result_file": result_file, "n_faces": n_faces, "n_faces_found": n_found, "n_result_detections": n_det,
        "bg_psnr_db": psnr, "bg_ssim": ssim,
    }


def _top1(face_rows, gallery, gallery_keys, result_desc, threshold) -> float:
    """Fill `top1_reidentified`; return the chance level (a random gallery pick hits the same identity)."""
    g = np.stack(gallery)
    key_index = {k: i for i, k in enumerate(gallery_keys)}
    same = np.linalg.norm(g[:, None] - g[None], axis=-1) < threshold  # identities among the originals
    chance = float(same.mean(axis=1).mean())
    for row in face_rows:
        own = key_index[(row["image"], row["face"])]
        d = np.linalg.norm(g - result_desc[(row["method"], row["image"], row["face"])], axis=1)
        row["top1_reidentified"] = bool(same[own, int(np.argmin(d))])
    return chance


def _mean(values) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def _median(values) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.median(v)) if v else None


def summarize(methods: list[Method], face_rows: list[dict], image_rows: list[dict], settings: HarnessSettings,
              gallery_size: int) -> dict:
    out = {}
    for m in methods:
        faces = [r for r in face_rows if r["method"] == m.name]
        imgs = [r for r in image_rows if r["method"] == m.name]
        ok = [r for r in imgs if r["status"] == images.OK]
        problems: dict[str, list[str]] = {}
        for r in imgs:
            if r["status"] != images.OK:
                problems.setdefault(r["status"], []).append(r["image"])
        both_mesh = [r for r in faces if r["mesh_original"] and r["mesh_result"]]
        n = len(faces)
        entry = {
            "kind": m.kind, "description": m.description,
            "n_images": len(imgs), "n_images_evaluated": len(ok), "n_faces": n,
            "reid_rate": (sum(r["reidentified"] for r in faces) / n) if n else None,
            "reid_top1_rate": (sum(r["top1_reidentified"] for r in faces) / n) if n else None,
            "id_distance_mean": _mean(r["id_distance"] for r in faces),
            "id_distance_median": _median(r["id_distance"] for r in faces),
            "id_distance_min": min((r["id_distance"] for r in faces), default=None),
            "det_recall": (sum(r["found_in_result"] for r in faces) / n) if n else None,
            "mesh_found_rate": (len(both_mesh) / sum(r["mesh_original"] for r in faces))
            if any(r["mesh_original"] for r in faces) else None,
        }
        for key in ATTRIBUTE_KEYS:
            entry[key + "_mean"] = _mean(r[key] for r in both_mesh)
        entry["bg_psnr_db_mean"] = _mean(r["bg_psnr_db"] for r in ok)
        entry["bg_ssim_mean"] = _mean(r["bg_ssim"] for r in ok)
        entry["sharpness_ratio_median"] = _median(r["sharpness_ratio"] for r in faces)
        entry["face_mad_mean"] = _mean(r["face_mad"] for r in faces)
        entry["problems"] = problems
        out[m.name] = entry
    settings_dict = asdict(settings)
    return {
        "threshold": settings.threshold,
        "gallery_size": gallery_size,
        "reference_ranges": {"genuine": list(GENUINE_RANGE), "impostor": list(IMPOSTOR_RANGE)},
        "settings": settings_dict,
        "methods": out,
    }


def _thumbnail_tiles(tiles, height: int) -> list[dict]:
    return [{"label": label, "caption": " ".join(texts), "png": tile_png(img, boxes, texts, flags, height)}
            for label, img, boxes, texts, flags in tiles]
