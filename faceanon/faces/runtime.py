"""onnxruntime and insightface: importing them, diagnosing broken installs, choosing execution providers.

insightface (>= 2.1) and onnxruntime are imported lazily, inside the functions that need them, so a broken install
cannot stop the pack from loading; the error then says what to install.

    onnxruntime_distributions() -> list[(dist name, version)]
    runtime_conflict(dists) -> message or None
    choose_providers(request, available) -> list[str]
    import_runtime() -> (onnxruntime, get_model)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from .errors import FaceModelError

PROVIDERS = ("auto", "CPU", "CUDA", "ROCm", "CoreML", "DirectML", "OpenVINO")
PROVIDER_NAMES = {
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
    elif request in PROVIDER_NAMES:
        name = PROVIDER_NAMES[request]
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


def import_runtime():
    """(onnxruntime module, insightface's get_model), or a FaceModelError that says what to install."""
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
