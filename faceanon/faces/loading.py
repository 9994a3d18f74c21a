"""Loading an insightface model pack onto onnxruntime sessions (detector, recognizer, 106-point landmarks).

    load_face_analysis(name, roots, provider="auto", det_size=640) -> FaceAnalysis
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FaceModelError
from .packs import KNOWN_PACKS, PACK_SOURCE, find_pack
from .runtime import PROVIDER_NAMES, choose_providers, import_runtime, onnxruntime_distributions, runtime_conflict

logger = logging.getLogger(__name__)

# Detections overlapping more than this (IoU) are one face (the detector's own NMS and the merge across passes).
NMS_IOU = 0.4

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
    ort, get_model = import_runtime()
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
    if provider not in ("auto", "CPU") and PROVIDER_NAMES[provider] not in active:
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
