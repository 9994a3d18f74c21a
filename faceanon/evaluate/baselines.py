"""What people use today, evaluated next to the pack: Gaussian blur, pixelation and a solid mask of each face.

Each baseline is applied to every face detected in the original, inside the face box scaled by `region_scale`
(dlib/mediapipe boxes are tight: brow to chin), with hard edges, as typical redaction tools do. `unchanged`
(output = input) is the control: its re-identification rate must be 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models import Box

BASELINES = ("unchanged", "blur", "pixelate", "mask")
DEFAULT_BASELINES = ("blur", "pixelate", "mask")


@dataclass(frozen=True)
class BaselineSettings:
    region_scale: float = 1.3  # the redacted region: each face box scaled by this about its centre
    blur_sigma: float = 0.1  # Gaussian sigma as a fraction of the region's longer side
    pixel_blocks: int = 8  # pixelation blocks across the region's longer side
    mask_value: int = 0  # solid mask grey level (0 = black)

    def describe(self, name: str) -> str:
        if name == "blur":
            return f"Gaussian blur, sigma = {self.blur_sigma:g} x face region side"
        if name == "pixelate":
            return f"pixelation, {self.pixel_blocks} blocks across the face region"
        if name == "mask":
            return f"solid mask (grey level {self.mask_value})"
        if name == "unchanged":
            return "control: output = input"
        raise ValueError(name)


def apply_baseline(name: str, rgb: np.ndarray, boxes: list[Box], settings: BaselineSettings) -> np.ndarray:
    """A new image: `rgb` with every face region redacted by baseline `name` (the input is not modified)."""
    import cv2

    if name not in BASELINES:
        raise ValueError(f"unknown baseline '{name}'; expected one of {', '.join(BASELINES)}")
    out = rgb.copy()
    if name == "unchanged":
        return out
    h, w = rgb.shape[:2]
    for face in boxes:
        r = face.scaled(settings.region_scale, rgb.shape)
        if r.width < 1 or r.height < 1:
            continue
        side = max(r.width, r.height)
        if name == "mask":
            out[r.y0:r.y1, r.x0:r.x1] = settings.mask_value
        elif name == "blur":
            sigma = max(0.5, settings.blur_sigma * side)
            pad = int(np.ceil(3 * sigma))
            # blur a window with real context around the region (not zero borders), then copy the region
            wx0, wy0, wx1, wy1 = max(0, r.x0 - pad), max(0, r.y0 - pad), min(w, r.x1 + pad), min(h, r.y1 + pad)
            window = cv2.GaussianBlur(rgb[wy0:wy1, wx0:wx1], (0, 0), sigmaX=sigma, sigmaY=sigma,
                                      borderType=cv2.BORDER_REFLECT)
            out[r.y0:r.y1, r.x0:r.x1] = window[r.y0 - wy0:r.y1 - wy0, r.x0 - wx0:r.x1 - wx0]
        elif name == "pixelate":
            bw = max(1, round(settings.pixel_blocks * r.width / side))
            bh = max(1, round(settings.pixel_blocks * r.height / side))
            small = cv2.resize(out[r.y0:r.y1, r.x0:r.x1], (bw, bh), interpolation=cv2.INTER_AREA)
            out[r.y0:r.y1, r.x0:r.x1] = cv2.resize(small, (r.width, r.height), interpolation=cv2.INTER_NEAREST)
    return out
