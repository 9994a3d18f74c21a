"""Negative-identity guidance, the per-step mask gate and the pixel restore, as pure functions.

Both papers combine two predictions of the same step: the conditional branch (text_c + identity) and the
unconditional branch (text_u + the null identity): ``pred = uncond + scale * (cond - uncond)``.

* NullFace: identity ``-lambda_id * e`` (negated embedding), positive scale (+10).
* Reverse Personalization: identity ``+lambda_id * e``, negative scale (-10); the attribute prompt replaces text_u.

Because the FaceID projection is non-linear the two conventions differ; both are expressed by a signed
`identity_scale` (the factor applied to the embedding) and a signed `cfg`.

The mask gate (NullFace, algorithms.md A.5) keeps the guided prediction inside the mask and, outside it, the
*identity-free* prediction: the inversion's own prediction, i.e. its texts and its guidance scale with the null
identity in both branches, so the region outside the mask follows the reconstruction trajectory exactly.

The guided prediction with the null identity differs from the inversion's by ``(cfg - inversion_cfg) x (text_c -
text_u)`` (the texts' predictions): sampling may use another scale than the inversion only where both texts are the
same (NullFace, text "" in both). `cfg_mismatch` says what a mismatch breaks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cfg_combine", "cfg_mismatch", "branch_identity", "mask_to_latent", "gate", "step_index",
           "restore_outside"]


def _blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of [B, 1, H, W] masks (kornia), kernel covering 3 sigma, replicated borders."""
    import kornia.filters

    k = 2 * int(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(m, (k, k), (sigma, sigma), border_type="replicate")


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``uncond + scale * (cond - uncond)``; `scale` may be negative."""
    return uncond + scale * (cond - uncond)


def cfg_mismatch(cfg: float, inversion_cfg: float, texts_differ: bool) -> str | None:
    """What sampling at `cfg` breaks when the inversion used `inversion_cfg`, or None when nothing does.

    Args:
        cfg (`float`): the sampling guidance scale.
        inversion_cfg (`float`): the inversion's guidance scale.
        texts_differ (`bool`): whether the conditional and unconditional texts differ (Reverse Personalization: ""
            vs the zeroed prompt; NullFace: "" in both, where any pair of scales is consistent).

    Returns:
        `str | None`: a sentence for the log and the report.
    """
    if not texts_differ or float(cfg) == float(inversion_cfg):
        return None
    return (f"sampling cfg {cfg:g} differs from the inversion's cfg {inversion_cfg:g} while the conditional and "
            f"unconditional texts differ: every guided step adds {cfg - inversion_cfg:g} x (conditional - "
            f"unconditional text prediction) that the inversion did not make, so the image drifts from the photo "
            f"beyond the identity (background, hair, pose, light, wherever the guidance is not gated off) and "
            f"identity_scale 0 no longer reconstructs it; outside the face gate the prediction still follows the "
            f"inversion. Invert and sample with one scale.")


def branch_identity(embeddings: torch.Tensor, identity_scale: float) -> torch.Tensor:
    """The conditional branch's identity: ``identity_scale * e`` (NullFace: -1, Reverse Personalization: +1).

    Args:
        embeddings (`torch.Tensor`): [n, D] ArcFace embeddings (L2-normalised rows).
        identity_scale (`float`): lambda_id with its sign; 0 gives the zero vector, i.e. the null identity.

    Returns:
        `torch.Tensor`: [n, D] float32.
    """
    e = torch.as_tensor(embeddings, dtype=torch.float32)
    if e.ndim == 1:
        e = e[None]
    if e.ndim != 2:
        raise ValueError(f"identity embeddings must be [n, D], got shape {tuple(e.shape)}")
    return e * float(identity_scale)


def mask_to_latent(mask: torch.Tensor, size: tuple[int, int], feather: float = 0.0,
                   threshold: float | None = 0.5) -> torch.Tensor:
    """Resize a MASK (1 = change) to latent resolution, as [B, 1, h, w].

    Args:
        mask (`torch.Tensor`): [H, W] or [B, H, W] in [0, 1].
        size (`tuple[int, int]`): latent (h, w).
        feather (`float`, defaults to 0): Gaussian sigma in latent pixels; 0 keeps NullFace's hard mask
            (binarised at `threshold`, nearest downsampling).
        threshold (`float`, *optional*): binarise before resizing; None keeps soft values (area resize).

    Returns:
        `torch.Tensor`: float32 [B, 1, h, w] in [0, 1].
    """
    m = torch.as_tensor(mask, dtype=torch.float32)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"mask must be [H, W] or [B, H, W], got shape {tuple(m.shape)}")
    m = m[:, None]
    if threshold is not None:
        m = (m >= threshold).float()
        m = F.interpolate(m, size=size, mode="nearest")
    else:
        m = F.interpolate(m, size=size, mode="area")
    if feather > 0:
        m = _blur(m, feather)
    return m.clamp(0, 1)


def gate(guided: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``outside + mask * (guided - outside)``: the guided prediction inside the mask, `outside` elsewhere."""
    if mask.shape[0] not in (1, guided.shape[0]):
        raise ValueError(f"mask batch {mask.shape[0]} does not match the latent batch {guided.shape[0]} "
                         f"(give one mask, or one per image)")
    m = mask.to(guided.device, guided.dtype)
    return torch.where(m > 0, outside + m * (guided - outside), outside)


def step_index(sigma: float, sample_sigmas: torch.Tensor | None) -> int:
    """Index of the current step in the run's schedule (nearest sigma); 0 when the schedule is unknown."""
    if sample_sigmas is None or len(sample_sigmas) == 0:
        return 0
    s = torch.as_tensor(sample_sigmas, dtype=torch.float64).flatten().cpu()
    return int(torch.argmin((s[:-1] - float(sigma)).abs())) if len(s) > 1 else 0


def restore_outside(original: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor,
                    feather: float = 0.0) -> torch.Tensor:
    """Put the original pixels back wherever the mask is 0 (bit-identical), with an inward feathered seam.

    Args:
        original (`torch.Tensor`): [B, H, W, C] IMAGE.
        generated (`torch.Tensor`): [B, H, W, C] IMAGE of the same shape.
        mask (`torch.Tensor`): [H, W] or [B, H, W], 1 = changed region.
        feather (`float`, defaults to 0): Gaussian sigma in pixels; the feather only lowers the mask inside the
            region (outside it stays 0), so pixels outside are the original's bits.

    Returns:
        `torch.Tensor`: [B, H, W, C].
    """
    if original.shape != generated.shape:
        raise ValueError(f"original {tuple(original.shape)} and generated {tuple(generated.shape)} images differ "
                         f"in shape")
    m = torch.as_tensor(mask, dtype=torch.float32, device=original.device)
    if m.ndim == 2:
        m = m[None]
    if m.shape[-2:] != original.shape[1:3]:
        m = F.interpolate(m[:, None], size=original.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    m = m.clamp(0, 1)
    if feather > 0:
        m = torch.minimum(m, _blur(m[:, None], feather)[:, 0])
    m = m[..., None].to(original.dtype)
    blended = original + m * (generated - original)
    return torch.where(m > 0, blended, original)
