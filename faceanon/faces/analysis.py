"""Loading insightface model packs and finding faces (detection, 106-point landmarks, ArcFace embeddings).

insightface (>= 2.1) and onnxruntime are imported lazily, inside the functions that need them, so a broken
install cannot stop the pack from loading; the error then says what to install.

Public API (host-independent; the node layer passes ComfyUI's folders and a progress callback):

    list_packs(roots) -> list[str]
    find_pack(name, roots) -> (folder, {role: file})
    onnxruntime_distributions() -> list[(dist name, version)]
    choose_providers(request, available) -> list[str]
    load_face_analysis(name, roots, provider="auto", det_size=640) -> FaceAnalysis
    scan_plan(height, width, det_size, min_face_size) -> list[ScanPass]
    detect(analysis, images, ...) -> Faces
    face_identity(faces, select, index, combine) -> Identity
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._image import as_bhwc, rgb, to_bgr_uint8
from .types import ORDERS, Face, Faces, Identity

logger = logging.getLogger(__name__)

# A real SCRFD finds faces from about 10-16 px (its smallest anchors are 16 px at stride 8) up to about half its
# input. The scan plan makes every wanted face at least this large in some detector pass.
DETECTOR_MIN_FACE = 16
# The coarse pass catches faces that fill most of the frame (insightface 2.1 does the same with a 128 px pass).
COARSE_SIZE = 128
MAX_TILES = 256
NMS_IOU = 0.4

IF_NO_FACE = ("error", "flag and pass through")
PROVIDERS = ("auto", "CPU", "CUDA", "ROCm", "CoreML", "DirectML", "OpenVINO")
_PROVIDER_NAMES = {
    "CPU": "CPUExecutionProvider",
    "CUDA": "CUDAExecutionProvider",
    "ROCm": "ROCMExecutionProvider",
    "CoreML": "CoreMLExecutionProvider",
    "DirectML": "DmlExecutionProvider",
    "OpenVINO": "OpenVINOExecutionProvider",
}
# "auto" takes the first of these that onnxruntime offers, then CPU. (TensorRT is left out on purpose: it
# compiles an engine per input size, minutes of work for milliseconds of inference.)
_AUTO_ORDER = ("CUDAExecutionProvider", "ROCMExecutionProvider", "MIGraphXExecutionProvider",
               "CoreMLExecutionProvider", "DmlExecutionProvider")

PACK_SOURCE = (
    "insightface model packs are zip files published by the insightface project (the insightface Python package "
    "downloads them from https://github.com/deepinsight/insightface/releases, tag 'model-zoo', e.g. buffalo_l.zip; "
    "antelopev2.zip is also mirrored on Hugging Face). Unzip so the .onnx files sit directly in the pack folder. "
    "The pretrained models are licensed for non-commercial research use only."
)


class FaceModelError(RuntimeError):
    """A face model pack, file or runtime is missing or broken; the message says what to do."""


class NoFaceError(RuntimeError):
    """No face was found in some image and the caller asked for an error."""


# ---------------------------------------------------------------------------------------------------------------
# packs
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackSpec:
    detector: str
    recognizer: str
    landmark: str
    unused: tuple[str, ...] = ()

    def expected(self) -> list[tuple[str, str]]:
        return [
            (self.detector, "face detector (SCRFD), required"),
            (self.recognizer, "ArcFace recognizer (identity embeddings), required"),
            (self.landmark, "106-point landmarks (region masks, face-shaped paste masks), required"),
            *[(f, "not used by FaceAnon, may be present") for f in self.unused],
        ]


KNOWN_PACKS = {
    "buffalo_l": PackSpec("det_10g.onnx", "w600k_r50.onnx", "2d106det.onnx", ("1k3d68.onnx", "genderage.onnx")),
    "antelopev2": PackSpec("scrfd_10g_bnkps.onnx", "glintr100.onnx", "2d106det.onnx",
                           ("1k3d68.onnx", "genderage.onnx")),
}


def _candidate_dirs(name: str, roots: Sequence[str | os.PathLike]) -> list[Path]:
    out = []
    for root in roots:
        root = Path(root)
        for d in (root / "models" / name, root / name):
            if d not in out:
                out.append(d)
    return out


def _where_to_put(name: str, roots: Sequence[str | os.PathLike]) -> str:
    first = Path(roots[0]) / "models" / name if roots else Path("ComfyUI/models/insightface/models") / name
    return (
        f"Put the pack in {first}{os.sep} (ComfyUI/models/insightface/models/{name}/), or in "
        f"<path>/models/{name}/ under an 'insightface:' entry of extra_model_paths.yaml."
    )


def _expected_listing(name: str) -> str:
    spec = KNOWN_PACKS.get(name)
    if spec is None:
        return ("  a face detector (SCRFD .onnx, required), an ArcFace recognizer (.onnx, for identity embeddings) "
                "and optionally 2d106det.onnx (landmarks)")
    return "\n".join(f"  {f}  ({why})" for f, why in spec.expected())


def list_packs(roots: Sequence[str | os.PathLike]) -> list[str]:
    """Names of the packs found under `roots` (each root's models/<name>/ or <name>/ holding .onnx files).

    The known packs (buffalo_l, antelopev2) are always listed first, found or not, so that a workflow that names
    them validates and the loader can explain what is missing.
    """
    found = []
    for root in roots:
        root = Path(root)
        for base in (root / "models", root):
            if not base.is_dir():
                continue
            for d in sorted(base.iterdir()):
                if d.is_dir() and d.name != "models" and any(d.glob("*.onnx")) and d.name not in found:
                    found.append(d.name)
    return list(KNOWN_PACKS) + [n for n in found if n not in KNOWN_PACKS]


def find_pack(name: str, roots: Sequence[str | os.PathLike]) -> tuple[Path, dict[str, Path]]:
    """Locate pack `name`; return its folder and, for known packs, {role: file} of the files FaceAnon uses.

    Roles: "detector", "recognizer", "landmark". For an unknown pack every .onnx file is returned under its
    file name and is routed by shape when loaded.

    Raises:
        FaceModelError: naming the pack, each expected file, the folders searched and where packs come from.
    """
    if not name or any(sep in name for sep in ("/", "\\")) or name in (".", ".."):
        raise FaceModelError(f"invalid face model pack name {name!r}: expected a folder name such as buffalo_l")
    dirs = _candidate_dirs(name, roots)
    for d in dirs:
        if not d.is_dir():
            continue
        onnx_files = sorted(d.glob("*.onnx"))
        if not onnx_files:
            nested = d / name
            if nested.is_dir() and any(nested.glob("*.onnx")):
                raise FaceModelError(
                    f"face model pack '{name}' is nested one folder too deep: the .onnx files are in {nested}, "
                    f"expected directly in {d}. Move them up one level (a common result of unzipping "
                    f"{name}.zip into a folder of the same name)."
                )
            raise FaceModelError(
                f"face model pack '{name}': the folder {d} exists but holds no .onnx files. Expected:\n"
                f"{_expected_listing(name)}\n{PACK_SOURCE}"
            )
        spec = KNOWN_PACKS.get(name)
        if spec is None:
            return d, {p.name: p for p in onnx_files}
        have = {p.name for p in onnx_files}
        roles = {"detector": spec.detector, "recognizer": spec.recognizer, "landmark": spec.landmark}
        missing = [f for f in roles.values() if f not in have]
        if missing:
            raise FaceModelError(
                f"face model pack '{name}' in {d} is incomplete: missing {', '.join(missing)}. "
                f"Found: {', '.join(sorted(have))}. Expected:\n{_expected_listing(name)}\n"
                f"Download the pack again. {PACK_SOURCE}"
            )
        return d, {role: d / f for role, f in roles.items()}
    searched = "\n".join(f"  {d}" for d in dirs) or "  (no insightface model folder is registered)"
    raise FaceModelError(
        f"face model pack '{name}' was not found. It must be a folder named {name} holding:\n"
        f"{_expected_listing(name)}\nSearched:\n{searched}\n{_where_to_put(name, roots)}\n{PACK_SOURCE}"
    )


# ---------------------------------------------------------------------------------------------------------------
# onnxruntime
# ---------------------------------------------------------------------------------------------------------------
# Distributions that install the `onnxruntime` module itself (add-ons such as onnxruntime-extensions,
# onnxruntime-genai or the onnxruntime-ep-* plugins do not, and may sit beside one of these).
_ORT_DIST = re.compile(
    r"^(onnxruntime([-_](gpu|gpu[-_]extended|directml|openvino|silicon|rocm|qnn|cann|migraphx|coreml|azure"
    r"|training|training[-_]cpu))?|ort[-_]nightly([-_](gpu|directml))?)$", re.IGNORECASE)


def is_runtime_distribution(name: str) -> bool:
    """True for a distribution that provides the `onnxruntime` module (onnxruntime, onnxruntime-gpu, ...)."""
    return bool(_ORT_DIST.match(name.strip()))


def onnxruntime_distributions() -> list[tuple[str, str]]:
    """Installed distributions that provide the `onnxruntime` module, as (name, version)."""
    from importlib import metadata

    seen = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").strip()
        if name and is_runtime_distribution(name):
            seen[name.lower().replace("_", "-")] = dist.version
    return sorted(seen.items())


def runtime_conflict(dists: Sequence[tuple[str, str]]) -> str | None:
    """A message when several onnxruntime distributions are installed side by side, else None."""
    if len(dists) < 2:
        return None
    names = [n for n, _ in dists]
    listing = ", ".join(f"{n} {v}" for n, v in dists)
    keep = next((n for n in names if n != "onnxruntime"), names[0])
    py = sys.executable
    return (
        f"several onnxruntime packages are installed side by side ({listing}). They all write the same "
        f"'onnxruntime' module, so which one you get depends on install order, and a GPU build is often shadowed "
        f"by the CPU one (only CPUExecutionProvider shows up). Keep exactly one: "
        f"'{py} -m pip uninstall -y {' '.join(names)}' then '{py} -m pip install {keep}' "
        f"(or 'onnxruntime' for CPU). insightface depends on 'onnxruntime'; pip then reports that dependency as "
        f"missing, which is harmless when a GPU build provides the module."
    )


def choose_providers(request: str, available: Sequence[str]) -> list[str]:
    """Execution providers for `request` ("auto" or one of `PROVIDERS`), CPU always last as fallback.

    Raises:
        FaceModelError: an explicitly requested provider is not offered by the installed onnxruntime.
    """
    available = list(available)
    if request == "auto":
        chosen = [p for p in _AUTO_ORDER if p in available][:1]
    elif request in _PROVIDER_NAMES:
        name = _PROVIDER_NAMES[request]
        if name not in available:
            hint = {
                "CUDA": "install onnxruntime-gpu (matching your CUDA/cuDNN) INSTEAD of onnxruntime",
                "ROCm": "install onnxruntime-rocm (AMD's build) instead of onnxruntime",
                "CoreML": "CoreML comes with the regular onnxruntime wheel on macOS only",
                "DirectML": "install onnxruntime-directml instead of onnxruntime (Windows)",
                "OpenVINO": "install onnxruntime-openvino instead of onnxruntime",
            }.get(request, "")
            conflict = runtime_conflict(onnxruntime_distributions())
            raise FaceModelError(
                f"execution provider {request} ({name}) is not available in this onnxruntime; available: "
                f"{', '.join(available) or 'none'}. To use it, {hint}; never keep two onnxruntime packages "
                f"installed. Or choose provider 'auto' or 'CPU'." + (f"\nAlso: {conflict}" if conflict else "")
            )
        chosen = [name]
    else:
        raise FaceModelError(f"unknown provider {request!r}; expected one of {', '.join(PROVIDERS)}")
    if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if not chosen:
        chosen = available[:1]
    return chosen


def _import_runtime():
    try:
        import onnxruntime
    except Exception as e:  # noqa: BLE001 - report any import failure with the fix
        dists = onnxruntime_distributions()
        conflict = runtime_conflict(dists)
        raise FaceModelError(
            f"onnxruntime could not be imported ({type(e).__name__}: {e}). Face analysis needs exactly one of "
            f"onnxruntime (CPU, default) or onnxruntime-gpu installed in the Python that runs ComfyUI "
            f"({sys.executable}): '{sys.executable} -m pip install onnxruntime'."
            + (f"\n{conflict}" if conflict else "")
        ) from e
    try:
        import insightface  # noqa: F401
        from insightface.model_zoo import get_model
    except Exception as e:  # noqa: BLE001
        raise FaceModelError(
            f"insightface could not be imported ({type(e).__name__}: {e}). Install the pack's requirements into "
            f"the Python that runs ComfyUI: '{sys.executable} -m pip install -r requirements.txt' "
            f"(insightface >= 2.1 is a pure-Python wheel: no compiler needed). If the error mentions numpy or "
            f"cv2, reinstall opencv-python/opencv-python-headless for your numpy version."
        ) from e
    return onnxruntime, get_model


# ---------------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class FaceAnalysis:
    """A loaded model pack: detector, recognizer and 106-point landmark model on onnxruntime sessions.

    Attributes:
        name: pack name; folder: where it was loaded from; files: {role: path}.
        providers: execution providers requested; active_providers: what the detector session really uses.
        det_size: detector input side (pixels) for the global pass and the tiles.
        detector, recognizer, landmark: insightface model objects (recognizer/landmark may be None for
            unknown packs that lack them).
        warnings: problems found while loading (e.g. a side-by-side onnxruntime install).
    """

    name: str
    folder: Path
    files: dict[str, Path]
    providers: list[str]
    active_providers: list[str]
    det_size: int
    detector: object
    recognizer: object | None
    landmark: object | None
    warnings: list[str] = field(default_factory=list)

    @property
    def embedding_model(self) -> str:
        rec = self.files.get("recognizer")
        return f"{self.name}/{rec.name}" if rec is not None else ""

    def describe(self) -> str:
        parts = [f"{self.name} from {self.folder}", f"providers {', '.join(self.active_providers)}",
                 f"detector input {self.det_size}px"]
        for role in ("detector", "recognizer", "landmark"):
            p = self.files.get(role)
            parts.append(f"{role}: {p.name if p else 'none'}")
        return "; ".join(parts) + "".join(f"\nWARNING: {w}" for w in self.warnings)


def _load_model(get_model, path: Path, pack: str, providers, sess_options):
    size = path.stat().st_size if path.exists() else 0
    try:
        model = get_model(str(path), providers=providers, sess_options=sess_options)
    except Exception as e:  # noqa: BLE001 - onnxruntime/onnx raise many types for a bad file
        raise FaceModelError(
            f"could not load {path.name} of face model pack '{pack}' ({path}, {size} bytes): "
            f"{type(e).__name__}: {str(e)[:300]}. The file is probably corrupt or incompletely downloaded: "
            f"delete it and download the pack again. {PACK_SOURCE}"
        ) from e
    return model


def load_face_analysis(name: str, roots: Sequence[str | os.PathLike], provider: str = "auto",
                       det_size: int = 640) -> FaceAnalysis:
    """Load pack `name` found under `roots` on onnxruntime.

    Args:
        name: pack folder name ("buffalo_l", "antelopev2" or any folder of insightface .onnx files).
        roots: insightface model roots (ComfyUI: folder_paths.get_folder_paths("insightface")); the pack is
            looked up as <root>/models/<name>/ then <root>/<name>/.
        provider: "auto" (CUDA, ROCm, CoreML, DirectML, else CPU) or one of `PROVIDERS`.
        det_size: detector input size in pixels, a multiple of 32 (640 is what SCRFD was trained at).

    Returns:
        A FaceAnalysis.

    Raises:
        FaceModelError: missing/corrupt pack or files, unusable runtime, unavailable explicit provider.
    """
    if det_size < 64 or det_size % 32:
        raise FaceModelError(f"det_size must be a multiple of 32 and at least 64, got {det_size}")
    folder, files = find_pack(name, roots)
    ort, get_model = _import_runtime()
    warnings = []
    conflict = runtime_conflict(onnxruntime_distributions())
    if conflict:
        logger.warning("FaceAnon: %s", conflict)
        warnings.append(conflict)
    available = list(ort.get_available_providers())
    providers = choose_providers(provider, available)
    so = ort.SessionOptions()
    so.log_severity_level = 3

    if name in KNOWN_PACKS:
        models = {role: _load_model(get_model, p, name, providers, so) for role, p in files.items()}
        expected = {"detector": "detection", "recognizer": "recognition", "landmark": "landmark_2d_106"}
        for role, model in models.items():
            task = getattr(model, "taskname", None)
            if task != expected[role]:
                raise FaceModelError(
                    f"{files[role].name} of face model pack '{name}' is not a {expected[role]} model (insightface "
                    f"read it as {task or 'unrecognised'}). The file is wrong or corrupt: download the pack again. "
                    f"{PACK_SOURCE}"
                )
    else:
        models, used = {}, {}
        wanted = {"detection": "detector", "recognition": "recognizer", "landmark_2d_106": "landmark"}
        for p in files.values():
            model = _load_model(get_model, p, name, providers, so)
            role = wanted.get(getattr(model, "taskname", None))
            if role and role not in models:
                models[role], used[role] = model, p
        if "detector" not in models:
            raise FaceModelError(
                f"face model pack '{name}' in {folder} has no face detector among {', '.join(files)}. "
                f"Expected an SCRFD detector (buffalo_l: det_10g.onnx, antelopev2: scrfd_10g_bnkps.onnx). {PACK_SOURCE}"
            )
        files = used
    det = models["detector"]
    if not getattr(det, "use_kps", False):
        raise FaceModelError(
            f"the detector {files['detector'].name} of pack '{name}' gives no 5-point keypoints; alignment needs "
            f"an SCRFD 'kps' model such as det_10g.onnx or scrfd_10g_bnkps.onnx."
        )
    det.nms_thresh = NMS_IOU
    active = list(det.session.get_providers())
    if provider not in ("auto", "CPU") and _PROVIDER_NAMES[provider] not in active:
        raise FaceModelError(
            f"onnxruntime offers {provider} but could not start it for {files['detector'].name} (active: "
            f"{', '.join(active)}); usually the CUDA/cuDNN (or driver) libraries it needs are missing or of the "
            f"wrong version. See onnxruntime's requirements for your version, or use provider 'auto'/'CPU'."
            + (f"\n{conflict}" if conflict else "")
        )
    if provider == "auto" and providers[0] not in active:
        msg = f"{providers[0]} is offered but did not start; running on {', '.join(active)}"
        logger.warning("FaceAnon: %s", msg)
        warnings.append(msg)
    return FaceAnalysis(name=name, folder=folder, files=dict(files), providers=providers, active_providers=active,
                        det_size=int(det_size), detector=det, recognizer=models.get("recognizer"),
                        landmark=models.get("landmark"), warnings=warnings)


# ---------------------------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------------------------
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


def _embed(analysis: FaceAnalysis, bgr: np.ndarray, kpss: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Normalised embeddings, aligned exactly as insightface does (norm_crop at the recognizer's size)."""
    from insightface.utils import face_align

    rec = analysis.recognizer
    size = int(rec.input_size[0])
    with warnings.catch_warnings():  # scikit-image deprecations inside insightface's norm_crop
        warnings.simplefilter("ignore", FutureWarning)
        crops = [face_align.norm_crop(bgr, landmark=np.asarray(k, np.float32), image_size=size) for k in kpss]
    batch = rec.input_shape[0]
    chunk = len(crops) if not isinstance(batch, int) or batch <= 0 else batch
    feats = []
    for i in range(0, len(crops), max(chunk, 1)):
        feats.append(np.asarray(rec.get_feat(crops[i:i + chunk]), np.float32).reshape(len(crops[i:i + chunk]), -1))
    feats = np.concatenate(feats) if feats else np.zeros((0, 512), np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return list((feats / np.maximum(norms, 1e-12)).astype(np.float32))


def embed_faces(analysis: FaceAnalysis, image: torch.Tensor, kps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """ArcFace embeddings of faces given by their 5 keypoints in one image.

    Args:
        analysis: a FaceAnalysis with a recognizer.
        image: [H, W, C] float 0..1 (C = 1..4).
        kps: one (5, 2) keypoint array per face, image pixels.

    Returns:
        One (512,) float32 L2-normalised embedding per face, aligned and computed exactly as insightface's
        FaceAnalysis does (norm_crop at the recognizer's input size).
    """
    if analysis.recognizer is None:
        raise FaceModelError(f"face model pack '{analysis.name}' has no recognizer (ArcFace) model")
    bgr = to_bgr_uint8(rgb(as_bhwc(image)[0]))
    return _embed(analysis, bgr, [np.asarray(k, np.float32).reshape(5, 2) for k in kps])


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
    if_no_face: str = "error",
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
        if_no_face: "error" raises NoFaceError naming every image without a face and what was tried;
            "flag and pass through" records them in `Faces.missing` (and the report) instead.
        progress: called as progress(done_images, total_images) after each image (the node layer ticks its
            progress bar and checks for interruption there).

    Returns:
        Faces (image by image, each image's faces in `order`).
    """
    if if_no_face not in IF_NO_FACE:
        raise ValueError(f"if_no_face must be one of {IF_NO_FACE}, got {if_no_face!r}")
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
    from .types import _order_key

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
        embs = _embed(analysis, bgr, kpss) if want_emb and len(boxes) else [None] * len(boxes)
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
    if missing and if_no_face == "error":
        raise NoFaceError(
            f"no face found in image(s) {', '.join(map(str, missing))} of the batch of {b} ({w}x{h}). Tried: "
            f"{analysis.files['detector'].name} of {analysis.name} at threshold {threshold:g}, min_face_size "
            f"{min_face_size:g}px: {describe_plan(plan)}. Lower the threshold or min_face_size, check the image, or "
            f"set if_no_face to 'flag and pass through' to let such images through marked as NOT anonymized."
        )
    return Faces(faces=tuple(faces), image_size=(h, w), batch_size=b, missing=tuple(missing), notes=tuple(notes),
                 model=analysis.name, embedding_model=analysis.embedding_model if want_emb else "")


# ---------------------------------------------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------------------------------------------
IDENTITY_SELECT = ("largest", "index", "all")
IDENTITY_COMBINE = ("average", "batch")


def face_identity(faces: Faces, select: str = "largest", index: int = 0, combine: str = "average") -> Identity:
    """ArcFace identity from detected faces (e.g. of one or several reference photos).

    Args:
        faces: Faces with embeddings.
        select: "largest" = the largest face of each image; "index" = face number `index` of each image (in
            the detection order); "all" = every face.
        index: used with select="index"; negative counts from the end.
        combine: "average" = one identity, the normalised mean of the selected embeddings (averaging several
            reference photos); "batch" = one row per selected face.

    Returns:
        Identity with embeddings [K, 512].

    Raises:
        ValueError: an image has no face (or no face number `index`), or the faces have no embeddings.
    """
    if select not in IDENTITY_SELECT:
        raise ValueError(f"select must be one of {IDENTITY_SELECT}, got {select!r}")
    if combine not in IDENTITY_COMBINE:
        raise ValueError(f"combine must be one of {IDENTITY_COMBINE}, got {combine!r}")
    if faces.missing:
        raise ValueError(
            f"no face in reference image(s) {', '.join(map(str, faces.missing))}: an identity cannot be taken from "
            f"them. Remove those images or lower the detection threshold."
        )
    chosen: list[tuple[int, int]] = []  # (global number, number within image)
    for img in range(faces.batch_size):
        numbers = faces.indices_for_image(img)
        if not numbers:  # deselected (e.g. by Faces.select); images where detection failed are in `missing`
            continue
        if select == "all":
            chosen += [(n, k) for k, n in enumerate(numbers)]
        elif select == "largest":
            n = max(numbers, key=lambda n: faces[n].area)
            chosen.append((n, numbers.index(n)))
        else:
            if not -len(numbers) <= index < len(numbers):
                raise ValueError(f"image {img} has {len(numbers)} face(s): there is no face number {index}")
            chosen.append((numbers[index], index % len(numbers)))
    if not chosen:
        raise ValueError("no faces to take an identity from")
    sub = faces.select([n for n, _ in chosen])
    emb = sub.embeddings()
    sources = tuple(f"image {faces[n].image_index}, face {k}" for n, k in chosen)
    if combine == "average":
        mean = torch.nn.functional.normalize(emb.mean(0), dim=0)[None]
        return Identity(embeddings=mean, sources=(f"mean of {len(sources)}: " + "; ".join(sources),),
                        model=faces.embedding_model)
    return Identity(embeddings=emb, sources=sources, model=faces.embedding_model)
