"""CPU image-quality proxies: is the background kept, is the face still sharp, how much did the face change?

No learned quality model (FID, MUSIQ) runs offline here; these proxies answer narrower questions:
- `background_psnr` / `background_ssim`: pixels outside every original face box (each box scaled by
  `BACKGROUND_BOX_SCALE` so that feathered paste-back and hair do not count) should be kept; 100 dB = identical.
- `sharpness_ratio`: variance of the Laplacian inside the face box, result / original (blur -> far below 1).
- `face_mad`: mean absolute difference inside the face box, in [0, 1] (0 = the face was not touched).
"""

from __future__ import annotations

import numpy as np

from .models import Box

BACKGROUND_BOX_SCALE = 1.6
PSNR_CAP_DB = 100.0


def gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def background_mask(shape: tuple[int, ...], boxes: list[Box], scale: float = BACKGROUND_BOX_SCALE) -> np.ndarray:
    """True outside every face box scaled by `scale`."""
    mask = np.ones(shape[:2], dtype=bool)
    for box in boxes:
        b = box.scaled(scale, shape)
        mask[b.y0:b.y1, b.x0:b.x1] = False
    return mask


def background_psnr(orig: np.ndarray, result: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB over the masked pixels (all channels), capped at 100 dB; NaN when the mask is empty."""
    import cv2

    n = int(mask.sum())
    if n == 0:
        return float("nan")
    diff = cv2.absdiff(orig, result).astype(np.float32)
    sq = (diff * diff).sum(axis=2, dtype=np.float64) if diff.ndim == 3 else diff.astype(np.float64) ** 2
    mse = float(sq[mask].sum()) / (n * (orig.shape[2] if orig.ndim == 3 else 1))
    if mse <= 255.0**2 * 10 ** (-PSNR_CAP_DB / 10):
        return PSNR_CAP_DB
    return float(10 * np.log10(255.0**2 / mse))


def ssim_map(a: np.ndarray, b: np.ndarray, win: int = 7, data_range: float = 255.0) -> np.ndarray:
    """The SSIM map of two grey images with scikit-image's defaults (7x7 uniform window, K1 0.01, K2 0.03,
    sample covariance, reflected borders), computed with OpenCV box filters: the same numbers as
    `skimage.metrics.structural_similarity(a, b, data_range=255, full=True)[1]` (checked by a test), about 5x
    faster on large photos."""
    import cv2

    a = a.astype(np.float64)
    b = b.astype(np.float64)

    def box(x):
        return cv2.boxFilter(x, cv2.CV_64F, (win, win), normalize=True, borderType=cv2.BORDER_REFLECT)

    n = win * win
    cov_norm = n / (n - 1)
    ux, uy = box(a), box(b)
    vx = cov_norm * (box(a * a) - ux * ux)
    vy = cov_norm * (box(b * b) - uy * uy)
    vxy = cov_norm * (box(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def background_ssim(orig_gray: np.ndarray, result_gray: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (grey, 7x7 window) over the masked pixels; NaN when the mask is empty."""
    if not mask.any() or min(orig_gray.shape) < 7:
        return float("nan")
    return float(ssim_map(orig_gray, result_gray)[mask].mean())


def sharpness(gray_img: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian inside `box` (a focus measure)."""
    import cv2

    region = gray_img[box.y0:box.y1, box.x0:box.x1]
    if region.size == 0:
        return float("nan")
    return float(cv2.Laplacian(region.astype(np.float64), cv2.CV_64F).var())


def sharpness_ratio(orig_gray: np.ndarray, result_gray: np.ndarray, box: Box) -> float:
    so = sharpness(orig_gray, box)
    sr = sharpness(result_gray, box)
    if not np.isfinite(so) or so <= 1e-9:
        return float("nan")
    return sr / so


def face_mad(orig: np.ndarray, result: np.ndarray, box: Box) -> float:
    a = orig[box.y0:box.y1, box.x0:box.x1].astype(np.float64)
    b = result[box.y0:box.y1, box.x0:box.x1].astype(np.float64)
    if a.size == 0:
        return float("nan")
    return float(np.abs(a - b).mean() / 255.0)
