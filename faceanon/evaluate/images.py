"""Reading images and pairing originals with results (matched by file name)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import EvaluationInputError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}

# Per-image problem kinds (the `status` column of images.csv).
OK = "ok"
MISSING_RESULT = "missing_result"
UNREADABLE = "unreadable"
SIZE_MISMATCH = "size_mismatch"
NO_FACE = "no_face"


@dataclass
class Pair:
    """An original and, when one was found, its result."""

    name: str  # the original's file name (the key of every report row)
    original: Path
    result: Path | None


def list_images(folder: Path, role: str) -> list[Path]:
    """Image files directly inside `folder`, sorted by name; raises EvaluationInputError when there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise EvaluationInputError(f"{role} folder '{folder}' does not exist; pass the folder that holds the "
                                   f"{role} images")
    if not folder.is_dir():
        raise EvaluationInputError(f"{role} path '{folder}' is a file, expected a folder of images "
                                   f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        others = sorted(p.name for p in folder.iterdir())[:5]
        seen = f"it holds {others}" if others else "it is empty"
        raise EvaluationInputError(f"{role} folder '{folder}' has no image files ({seen}); expected files ending "
                                   f"in {', '.join(sorted(IMAGE_SUFFIXES))}")
    return files


def pair_images(originals: list[Path], results_dir: Path) -> tuple[list[Pair], list[Path]]:
    """Match each original with the result of the same file name.

    The exact name wins; otherwise a result with the same stem and another image suffix is accepted (ComfyUI saves
    PNG for a JPEG input). Returns the pairs (result None where there is none) and the results left unmatched.
    """
    results = list_images(results_dir, "results")
    by_name = {p.name: p for p in results}
    by_stem: dict[str, list[Path]] = {}
    for p in results:
        by_stem.setdefault(p.stem, []).append(p)
    used: set[Path] = set()
    pairs = []
    for orig in originals:
        match = by_name.get(orig.name)
        if match is None:
            candidates = [p for p in by_stem.get(orig.stem, []) if p not in used]
            if len(candidates) > 1:
                raise EvaluationInputError(
                    f"original '{orig.name}' matches several results by stem: {[p.name for p in candidates]}; "
                    f"keep one result per original in '{results_dir}'")
            match = candidates[0] if candidates else None
        if match is not None:
            used.add(match)
        pairs.append(Pair(orig.name, orig, match))
    unmatched = [p for p in results if p not in used]
    if unmatched and all(p.result is None for p in pairs):
        raise EvaluationInputError(
            f"no result in '{results_dir}' has the file name of an original (results: "
            f"{[p.name for p in unmatched[:5]]}, originals: {[p.name for p in originals[:5]]}); the harness pairs "
            "images by file name, so save each result under its original's name")
    return pairs, unmatched


def read_image(path: Path) -> np.ndarray:
    """Read an image as contiguous uint8 RGB (H, W, 3).

    Grey images become RGB, alpha is dropped, 16-bit is scaled to 8-bit and the EXIF orientation is applied
    (as ComfyUI's LoadImage does). Raises EvaluationInputError naming the file when it cannot be decoded.
    """
    import cv2

    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise EvaluationInputError(f"cannot read '{path}': {exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise EvaluationInputError(f"'{path}' is not a readable image ({data.size} bytes; OpenCV could not decode "
                                   "it): replace it with a PNG/JPEG/WebP file or remove it")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def write_image(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise EvaluationInputError(f"could not encode '{path}'")
    buf.tofile(str(path))


def resize_to(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize `rgb` to (H, W) = `shape` (area filter when shrinking, cubic when growing)."""
    import cv2

    h, w = shape
    shrink = h * w < rgb.shape[0] * rgb.shape[1]
    return np.ascontiguousarray(
        cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC))
