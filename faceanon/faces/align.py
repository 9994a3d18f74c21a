"""Aligned face crops (similarity warp, FFHQ framing) and seamless paste-back.

Public API:
    crop_transform(kps, size, margin) -> np.ndarray 3x3 (image pixel -> crop pixel)
    crop_faces(images, faces, size, margin, padding) -> (crops [N, S, S, 3], FaceCrops)
    paste_faces(images, crops, info, mask=..., feather=..., color_match=...) -> (images, alpha [B, H, W])

Coordinates: pixel centres at integer positions (OpenCV's convention, which kornia's warp_affine follows).
Warps are kornia's (bicubic for colours, bilinear for masks); a warp that shrinks by more than 2x is preceded by
area averaging so that large photos do not alias.

Paste-back guarantees:
- pixels where the feathered mask is 0 are bit-identical to the input image;
- pasting an unchanged crop returns the input (to float precision) inside the face: paste-back adds back the
  detail a warp round trip loses, but only where the edited crop still equals the original crop (within
  `detail_tolerance`), so nothing of the original face survives where the crop was changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ._image import as_bhwc, rgb
from .regions import face_mask_in_crop
from .types import FaceCrops, Faces

PADDING = ("reflection", "border", "zeros")
COLOR_MATCH = ("none", "mean", "mean and contrast")
MASK_SPACE = ("auto", "crop", "image")


# ---------------------------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------------------------
def ffhq_frame(kps: np.ndarray, margin: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ-style crop frame from 5 keypoints: (centre, x half-axis, y half-axis), image pixels.

    As in the FFHQ dataset alignment: the frame is oriented along the eye line corrected by the eye-to-mouth
    direction, its half-size is max(2 x eye distance, 1.8 x eye-to-mouth distance) times `margin`, its centre
    sits 10% of the eye-to-mouth vector below the eyes.
    """
    k = np.asarray(kps, np.float64).reshape(5, 2)
    eye_avg = (k[0] + k[1]) / 2
    eye_to_eye = k[1] - k[0]
    eye_to_mouth = (k[3] + k[4]) / 2 - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError(f"degenerate face keypoints {k.tolist()}: cannot build an alignment")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * float(margin)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return c, x, y


def crop_transform(kps: np.ndarray, size: int, margin: float = 1.0) -> np.ndarray:
    """3x3 matrix mapping image pixels to pixels of a size x size crop with FFHQ framing."""
    c, x, y = ffhq_frame(kps, margin)
    inv = np.eye(3)
    inv[:2, 0] = x * 2.0 / size
    inv[:2, 1] = y * 2.0 / size
    inv[:2, 2] = c + (x + y) * (1.0 / size - 1.0)
    return np.linalg.inv(inv)


def _translate(tx: float, ty: float) -> np.ndarray:
    m = np.eye(3)
    m[0, 2], m[1, 2] = tx, ty
    return m


def _resize_matrix(src_hw, dst_hw) -> np.ndarray:
    """Maps pixels of a dst_hw-sized resampling of an image back to pixels of the src_hw image."""
    ry, rx = src_hw[0] / dst_hw[0], src_hw[1] / dst_hw[1]
    m = np.eye(3)
    m[0, 0], m[1, 1] = rx, ry
    m[0, 2], m[1, 2] = (rx - 1) / 2, (ry - 1) / 2
    return m


def _warp(src: torch.Tensor, m: np.ndarray, out_hw: tuple[int, int], mode: str, padding: str) -> torch.Tensor:
    """kornia warp of src [1, C, h, w] by m (3x3, src pixel -> dst pixel) to out_hw; area pre-filter when
    the warp shrinks more than 2x."""
    from kornia.geometry.transform import warp_affine

    scale = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    h, w = src.shape[-2:]
    if scale < 0.5:
        k = 1.0 / scale
        small = (max(1, int(round(h / k))), max(1, int(round(w / k))))
        if small != (h, w):
            src = F.interpolate(src, size=small, mode="area")
            m = m @ _resize_matrix((h, w), small)
    mt = torch.as_tensor(m[:2], dtype=torch.float32, device=src.device)[None]
    return warp_affine(src, mt, out_hw, mode=mode, padding_mode=padding, align_corners=True)


def _quad_bbox(inverse: np.ndarray, size: int, pad: float, height: int, width: int):
    corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1], [size - 0.5, size - 0.5, 1]])
    pts = corners @ inverse[:2].T
    x0 = max(int(math.floor(pts[:, 0].min() - pad)), 0)
    y0 = max(int(math.floor(pts[:, 1].min() - pad)), 0)
    x1 = min(int(math.ceil(pts[:, 0].max() + pad)) + 1, width)
    y1 = min(int(math.ceil(pts[:, 1].max() + pad)) + 1, height)
    return x0, y0, x1, y1


def _crop_one(image_chw: torch.Tensor, forward: np.ndarray, size: int, padding: str) -> torch.Tensor:
    """[C, size, size] crop of image [C, H, W]."""
    _, h, w = image_chw.shape
    x0, y0, x1, y1 = _quad_bbox(np.linalg.inv(forward), size, 4.0, h, w)
    if x1 <= x0 or y1 <= y0:  # frame entirely outside the image: clamp to the nearest border pixels
        x0, y0 = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
        x1, y1 = x0 + 1, y0 + 1
    region = image_chw[None, :, y0:y1, x0:x1]
    out = _warp(region, forward @ _translate(x0, y0), (size, size), "bicubic", padding)
    return out[0].clamp(0, 1)


# ---------------------------------------------------------------------------------------------------------------
# crop
# ---------------------------------------------------------------------------------------------------------------
def crop_faces(
    images: torch.Tensor,
    faces: Faces,
    size: int = 512,
    margin: float = 1.0,
    padding: str = "reflection",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, FaceCrops]:
    """Aligned crops of every face.

    Args:
        images: [B, H, W, C] float 0..1, the images the faces were detected in.
        faces: Faces from detect().
        size: crop side in pixels (e.g. 512 for SD1.5, 1024 for SDXL).
        margin: framing factor; 1.0 = FFHQ framing (face with hair and chin), larger = more context.
        padding: how to fill crop pixels that fall outside the image: "reflection", "border" or "zeros".
        progress: called as progress(done_faces, total_faces).

    Returns:
        (crops [N, size, size, 3] float32 RGB on images' device, FaceCrops with the warp matrices and the
        face-shaped masks in crop coordinates). N = 0 gives an empty [0, size, size, 3] batch.
    """
    images = as_bhwc(images)
    b, h, w, _ = images.shape
    if (h, w) != tuple(faces.image_size) or b != faces.batch_size:
        raise ValueError(
            f"the faces were detected on {faces.batch_size} image(s) of {faces.image_size[1]}x{faces.image_size[0]}, "
            f"but these images are {b} of {w}x{h}: crop the images the faces were detected on"
        )
    if size < 16:
        raise ValueError(f"crop size must be at least 16 pixels, got {size}")
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    if padding not in PADDING:
        raise ValueError(f"padding must be one of {PADDING}, got {padding!r}")
    src = rgb(images).permute(0, 3, 1, 2)
    crops, fwds, invs, masks = [], [], [], []
    for i, f in enumerate(faces):
        fwd = crop_transform(f.kps, size, margin)
        crops.append(_crop_one(src[f.image_index], fwd, size, padding))
        fwds.append(fwd)
        invs.append(np.linalg.inv(fwd))
        masks.append(face_mask_in_crop(f, fwd, size, device=images.device))
        if progress is not None:
            progress(i + 1, len(faces))
    if crops:
        out = torch.stack(crops).permute(0, 2, 3, 1).contiguous()
        mask_t = torch.stack(masks)
    else:
        out = torch.zeros(0, size, size, 3, device=images.device)
        mask_t = torch.zeros(0, size, size, device=images.device)
    info = FaceCrops(
        size=int(size), margin=float(margin),
        forward=torch.as_tensor(np.array(fwds).reshape(-1, 3, 3), dtype=torch.float64),
        inverse=torch.as_tensor(np.array(invs).reshape(-1, 3, 3), dtype=torch.float64),
        image_index=tuple(f.image_index for f in faces), faces=faces, masks=mask_t, padding=padding,
    )
    return out, info


# ---------------------------------------------------------------------------------------------------------------
# paste
# ---------------------------------------------------------------------------------------------------------------
def _weighted_stats(x: torch.Tensor, wt: torch.Tensor):
    s = wt.sum().clamp_min(1e-6)
    mean = (x * wt).sum(dim=(-2, -1)) / s
    var = ((x - mean[:, None, None]) ** 2 * wt).sum(dim=(-2, -1)) / s
    return mean, var.clamp_min(1e-8).sqrt()


def match_color(new: torch.Tensor, ref: torch.Tensor, weight: torch.Tensor, mode: str) -> torch.Tensor:
    """Shift `new` [3, H, W] towards the colour statistics of `ref` in Lab, measured where `weight` [H, W] > 0.

    mode "mean" matches the mean colour (brightness and tint); "mean and contrast" also the spread. Statistics
    are measured on area-downsampled copies (at most 128 px); when they already agree, `new` is returned as is.
    """
    if mode == "none":
        return new
    from kornia.color import lab_to_rgb, rgb_to_lab

    h, w = new.shape[-2:]
    small = (min(h, 128), min(w, 128))
    stack = torch.cat([new, ref, weight[None].clamp(0, 1)], 0)[None]
    if small != (h, w):
        stack = F.interpolate(stack, size=small, mode="area")
    a_s, b_s, wt = rgb_to_lab(stack[:, :3])[0], rgb_to_lab(stack[:, 3:6])[0], stack[0, 6]
    if float(wt.sum()) < 4:
        wt = torch.ones_like(wt)
    ma, sa = _weighted_stats(a_s, wt)
    mb, sb = _weighted_stats(b_s, wt)
    ratio = torch.ones_like(sa) if mode == "mean" else sb / sa
    if float((mb - ma).abs().max()) < 1e-3 and float((ratio - 1).abs().max()) < 1e-4:
        return new
    lab = rgb_to_lab(new[None])[0]
    out = (lab - ma[:, None, None]) * ratio[:, None, None] + mb[:, None, None]
    return lab_to_rgb(out[None])[0].clamp(0, 1)


def _feather_mask(a: torch.Tensor, feather: float) -> torch.Tensor:
    """Gaussian feather of a [H, W] mask over about `feather` pixels (kornia blur; large feathers are blurred at
    a reduced resolution, which is the same up to interpolation)."""
    from kornia.filters import gaussian_blur2d

    if feather <= 0:
        return a
    h, w = a.shape
    x = a[None, None]
    factor = max(1.0, feather / 6.0)
    if factor > 1.5:
        x = F.interpolate(x, size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="area")
    f = feather / (factor if factor > 1.5 else 1.0)
    k = 2 * int(math.ceil(f)) + 1
    x = gaussian_blur2d(x, (k, k), (f / 2.5, f / 2.5), border_type="constant")
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x[0, 0]


def _border_fade(size: int, width: float, device) -> torch.Tensor:
    """[size, size]: 0 at the crop border rising linearly to 1 over `width` pixels (no square seams)."""
    width = max(float(width), 1.0)
    r = torch.arange(size, device=device, dtype=torch.float32)
    d = torch.minimum(r, size - 1 - r)
    ramp = (d / width).clamp(0, 1)
    return torch.minimum(ramp[:, None], ramp[None, :])


def _resolve_mask(mask: torch.Tensor | None, mask_space: str, n: int, b: int, crop_hw, image_hw):
    if mask is None:
        return None, None
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"mask must be [count, height, width], got shape {tuple(mask.shape)}")
    hw = tuple(mask.shape[-2:])
    m = mask.shape[0]
    if mask_space == "auto":
        fits_crop = hw == tuple(crop_hw) and m in (1, n)
        fits_image = hw == tuple(image_hw) and m in (1, b)
        if fits_crop and fits_image and n != b and m != 1:
            mask_space = "crop" if m == n else "image"
        elif fits_crop and not fits_image:
            mask_space = "crop"
        elif fits_image and not fits_crop:
            mask_space = "image"
        elif fits_crop and fits_image:
            raise ValueError(
                f"the mask ({m}x{hw[1]}x{hw[0]}) fits both the crops and the images; set mask_space to 'crop' or "
                f"'image'"
            )
        else:
            raise ValueError(
                f"the mask is {m} x {hw[1]}x{hw[0]}, which matches neither the {n} crop(s) of "
                f"{crop_hw[1]}x{crop_hw[0]} nor the {b} image(s) of {image_hw[1]}x{image_hw[0]}"
            )
    if mask_space == "crop":
        if m not in (1, n):
            raise ValueError(f"a crop-space mask needs 1 or {n} (one per crop) masks, got {m}")
        if hw != tuple(crop_hw):
            mask = F.interpolate(mask[:, None].float(), size=tuple(crop_hw), mode="bilinear", align_corners=False)[:, 0]
        return mask.float(), None
    if mask_space == "image":
        if m not in (1, b):
            raise ValueError(f"an image-space mask needs 1 or {b} (one per image) masks, got {m}")
        if hw != tuple(image_hw):
            raise ValueError(f"an image-space mask must be {image_hw[1]}x{image_hw[0]}, got {hw[1]}x{hw[0]}")
        return None, mask.float()
    raise ValueError(f"mask_space must be one of {MASK_SPACE}, got {mask_space!r}")


def paste_faces(
    images: torch.Tensor,
    crops: torch.Tensor,
    info: FaceCrops,
    *,
    mask: torch.Tensor | None = None,
    mask_space: str = "auto",
    limit_to_face: bool = True,
    feather: float = 16.0,
    color_match: str = "mean",
    detail_tolerance: float = 3.0 / 255.0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste (edited) crops back into the images they came from.

    Args:
        images: [B, H, W, C] the original images (C = 1, 2, 3 or 4; alpha is kept as it is).
        crops: [N, S', S', C'] edited crops, one per face of `info` (S' may differ from the crop size: e.g.
            upscaled crops are placed by scaling the warp).
        info: FaceCrops from crop_faces().
        mask: optional MASK (1 = paste): [N or 1, S, S] in crop coordinates or [B or 1, H, W] in image
            coordinates (see `mask_space`).
        mask_space: "auto" (decided by the mask's shape), "crop" or "image".
        limit_to_face: multiply the paste mask by the face-shaped mask (face with forehead) of each crop; off
            pastes the whole crop (or just `mask`).
        feather: width of the soft edge in crop pixels (Gaussian blur of the mask, plus a fade at the crop
            border so the square never shows).
        color_match: "none", "mean" (match mean Lab colour of the original face) or "mean and contrast".
        detail_tolerance: max per-channel difference (0..1) under which an edited crop pixel counts as
            unchanged, so the original's fine detail is kept there (0 disables).
        progress: called as progress(done_faces, total_faces).

    Returns:
        (images [B, H, W, C] float32, alpha [B, H, W] the mask actually used, 0 where nothing changed).
    """
    images = as_bhwc(images)
    crops = as_bhwc(crops, "crops", allow_empty=True)
    b, h, w, c = images.shape
    n = len(info)
    if (h, w) != tuple(info.image_size) or b != info.batch_size:
        raise ValueError(
            f"these crops were made from {info.batch_size} image(s) of {info.image_size[1]}x{info.image_size[0]}, "
            f"but the images given are {b} of {w}x{h}: paste into the images that were cropped"
        )
    if crops.shape[0] != n:
        raise ValueError(f"got {crops.shape[0]} crop(s) for {n} face(s): pass the crops made by Crop Faces "
                         "(one per face, same order)")
    if color_match not in COLOR_MATCH:
        raise ValueError(f"color_match must be one of {COLOR_MATCH}, got {color_match!r}")
    out = images.clone()
    alpha_total = torch.zeros(b, h, w, dtype=torch.float32, device=images.device)
    if n == 0:
        return out, alpha_total
    s_new = int(crops.shape[1])
    if crops.shape[2] != s_new:
        raise ValueError(f"crops must be square, got {crops.shape[2]}x{s_new}")
    crop_mask, image_mask = _resolve_mask(mask, mask_space, n, b, (s_new, s_new), (h, w))
    r = s_new / info.size
    rescale = _resize_matrix((s_new, s_new), (info.size, info.size))  # old crop px -> new crop px
    src_rgb = rgb(images).permute(0, 3, 1, 2)
    new_all = rgb(crops).permute(0, 3, 1, 2).to(images.device)
    fade = _border_fade(s_new, max(feather, 2.0 * r), images.device)
    for i in range(n):
        bi = info.image_index[i]
        fwd = rescale @ info.forward[i].cpu().numpy()
        inv = np.linalg.inv(fwd)
        orig = _crop_one(src_rgb[bi], fwd, s_new, info.padding)
        new = new_all[i]
        if info.masks.numel():
            face = info.masks[i].to(images.device).float()
            if face.shape[-1] != s_new:
                face = F.interpolate(face[None, None], size=(s_new, s_new), mode="bilinear", align_corners=False)[0, 0]
        else:
            face = face_mask_in_crop(info.faces[i], fwd, s_new, device=images.device)
        a = face if limit_to_face else torch.ones_like(face)
        if crop_mask is not None:
            a = a * crop_mask[i if crop_mask.shape[0] > 1 else 0].to(a.device)
        a = _feather_mask(a, feather) * fade
        new = match_color(new, orig, face, color_match)
        if detail_tolerance > 0:
            diff = (new - orig).abs().amax(0)
            keep = (1.0 - diff / detail_tolerance).clamp(0, 1)
        else:
            keep = torch.zeros_like(a)
        x0, y0, x1, y1 = _quad_bbox(inv, s_new, 2.0, h, w)
        if x1 <= x0 or y1 <= y0:
            continue
        to_region = np.linalg.inv(_translate(x0, y0)) @ inv
        rh, rw = y1 - y0, x1 - x0
        stack = torch.cat([new, orig, a[None], keep[None]], 0)[None]
        back = _warp(stack, to_region, (rh, rw), "bicubic", "zeros")[0]
        back_new, back_orig = back[:3], back[3:6]
        alpha, back_keep = back[6].clamp(0, 1), back[7].clamp(0, 1)
        if image_mask is not None:
            alpha = alpha * image_mask[bi if image_mask.shape[0] > 1 else 0, y0:y1, x0:x1].to(alpha.device)
        # snap: below 1/512 nothing changes (exactly the input), above 1 - 1/512 the crop replaces the pixel
        alpha = torch.where(alpha < 1.0 / 512, torch.zeros_like(alpha), alpha)
        alpha = torch.where(alpha > 1.0 - 1.0 / 512, torch.ones_like(alpha), alpha)
        src_region = src_rgb[bi, :, y0:y1, x0:x1]
        composite = (back_new + back_keep * (src_region - back_orig)).clamp(0, 1)
        cur = out[bi, y0:y1, x0:x1]  # [rh, rw, C]
        if c >= 3:
            target = composite.permute(1, 2, 0)
            chans = slice(0, 3)
        else:
            lum = torch.tensor([0.299, 0.587, 0.114], device=composite.device)
            target = (composite * lum[:, None, None]).sum(0, keepdim=True).permute(1, 2, 0)
            chans = slice(0, 1)
        before = cur[..., chans]
        blended = before * (1 - alpha[..., None]) + target * alpha[..., None]
        cur[..., chans] = torch.where(alpha[..., None] > 0, blended, before)
        alpha_total[bi, y0:y1, x0:x1] = torch.maximum(alpha_total[bi, y0:y1, x0:x1], alpha)
        if progress is not None:
            progress(i + 1, n)
    return out, alpha_total
