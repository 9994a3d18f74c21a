"""Small conversions between ComfyUI IMAGE tensors and what insightface / kornia expect."""

from __future__ import annotations

import numpy as np
import torch


def as_bhwc(images: torch.Tensor, what: str = "images", allow_empty: bool = False) -> torch.Tensor:
    """Validate a ComfyUI IMAGE ([B, H, W, C] float 0..1); a single [H, W, C] image gets a batch axis.

    Returns a float32 CPU-or-device tensor (not a copy when nothing had to change). An empty batch raises
    unless `allow_empty`.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what}: expected a torch tensor [batch, height, width, channels], "
                        f"got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(f"{what}: expected [batch, height, width, channels], got shape {tuple(images.shape)}")
    b, h, w, c = images.shape
    if c not in (1, 2, 3, 4):
        raise ValueError(
            f"{what}: expected 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels last, got shape "
            f"{tuple(images.shape)}; a channels-first tensor must be permuted to [batch, height, width, channels]"
        )
    if (b == 0 and not allow_empty) or h == 0 or w == 0:
        raise ValueError(f"{what}: empty image batch, shape {tuple(images.shape)}")
    if not images.is_floating_point():
        images = images.float() / 255.0
    elif images.dtype != torch.float32:
        images = images.float()
    return images


def rgb(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3]: grey is repeated, alpha dropped."""
    c = images.shape[-1]
    if c == 3:
        return images
    if c == 4:
        return images[..., :3]
    return images[..., :1].expand(*images.shape[:-1], 3)


def to_bgr_uint8(image_rgb: torch.Tensor) -> np.ndarray:
    """One [H, W, 3] float 0..1 image -> contiguous H x W x 3 uint8 BGR (what insightface reads)."""
    import cv2  # an insightface dependency; ~10x faster than the same in torch on a 16 MP photo

    a = np.ascontiguousarray(image_rgb.detach().float().cpu().numpy())
    if a.size and float(a.min()) < 0:  # convertScaleAbs takes |x|: clip negatives first (copy, input untouched)
        a = np.maximum(a, 0.0)
    u8 = cv2.convertScaleAbs(a, alpha=255.0)  # round to nearest, saturate at 255
    return cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
