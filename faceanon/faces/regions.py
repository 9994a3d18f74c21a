"""Face region masks (face, eyes, brows, nose, mouth) from landmarks.

MASK convention (ComfyUI): 1 = change (anonymize), 0 = leave as is. An "anonymize" mask is 1 on the chosen
regions; a "keep" mask is its exact inverse (0 on the chosen regions, 1 everywhere else), e.g. multiply a face
mask by a "keep eyes" mask to anonymize the face but keep the eyes.

Regions come from the 106-point landmarks when the pack has them (insightface 2d106 groups: contour 0-32, eyes
33-42 and 87-96, brows 43-51 and 97-105, mouth 52-71, nose 72-86), else from shapes built on the 5 keypoints. Each
region is a convex polygon (a hull of its points; ellipses for the 5-point fallback); positive dilation grows the
polygon exactly (Minkowski sum with a disc), negative dilation erodes the raster (kornia), feather blurs (kornia).

Public API:
    region_polygons(face, region) -> list[np.ndarray]   (image pixels)
    region_mask(faces, regions, mode, dilation, feather, coordinates, crop_info) -> Tensor
    face_mask_in_crop(face, forward, size) -> Tensor [size, size]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .types import Face, FaceCrops, Faces

REGIONS = ("face", "eyes", "brows", "nose", "mouth")
MODES = ("anonymize", "keep")
COORDINATES = ("image", "crop")

LANDMARKS_106 = {
    "contour": tuple(range(0, 33)),
    "eye_a": tuple(range(33, 43)),
    "brow_a": tuple(range(43, 52)),
    "mouth": tuple(range(52, 72)),
    "nose": tuple(range(72, 87)),
    "eye_b": tuple(range(87, 97)),
    "brow_b": tuple(range(97, 106)),
}


def parse_regions(regions: str | Iterable[str]) -> tuple[str, ...]:
    """"eyes+mouth", "eyes, mouth" or ["eyes", "mouth"] -> ("eyes", "mouth"); raises on unknown names."""
    if isinstance(regions, str):
        regions = [r for r in regions.replace(",", "+").split("+")]
    out = []
    for r in regions:
        r = r.strip().lower()
        if not r:
            continue
        if r not in REGIONS:
            raise ValueError(f"unknown face region {r!r}; expected some of {', '.join(REGIONS)}")
        if r not in out:
            out.append(r)
    if not out:
        raise ValueError(f"no face region chosen; expected some of {', '.join(REGIONS)}")
    return tuple(out)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise in image coordinates, y down) of (N, 2) points (Andrew's monotone chain)."""
    pts = np.unique(np.asarray(points, np.float64).reshape(-1, 2), axis=0)
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def _ellipse(center, axis_u, ru, rv, n: int = 32) -> np.ndarray:
    u = np.asarray(axis_u, np.float64)
    u = u / max(np.linalg.norm(u), 1e-9)
    v = np.array([-u[1], u[0]])
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.asarray(center, np.float64)[None] + np.outer(np.cos(t) * ru, u) + np.outer(np.sin(t) * rv, v)


def _frame(face: Face):
    k = np.asarray(face.kps, np.float64)
    eye_a, eye_b, nose, mouth_a, mouth_b = k
    eye_avg = (eye_a + eye_b) / 2
    mouth_avg = (mouth_a + mouth_b) / 2
    e2e = eye_b - eye_a
    e2m = mouth_avg - eye_avg
    iod = max(np.linalg.norm(e2e), 1e-3)
    em = max(np.linalg.norm(e2m), 1e-3)
    right = e2e / iod
    down = np.array([-right[1], right[0]])
    if np.dot(down, e2m) < 0:  # mirrored keypoints: trust the eye-to-mouth direction
        down = -down
    return eye_avg, mouth_avg, iod, em, right, down


def region_polygons(face: Face, region: str) -> list[np.ndarray]:
    """Convex polygons (each (K, 2), image pixels) that make up `region` of `face`."""
    if region not in REGIONS:
        raise ValueError(f"unknown face region {region!r}; expected one of {', '.join(REGIONS)}")
    eye_avg, mouth_avg, iod, em, right, down = _frame(face)
    lm = face.landmarks
    if lm is not None and len(lm) == 106:
        lm = np.asarray(lm, np.float64)
        g = {k: lm[list(v)] for k, v in LANDMARKS_106.items()}
        if region == "face":
            brows = np.concatenate([g["brow_a"], g["brow_b"]])
            forehead = brows - down[None] * 0.6 * em
            return [convex_hull(np.concatenate([lm, forehead]))]
        if region == "eyes":
            return [convex_hull(g["eye_a"]), convex_hull(g["eye_b"])]
        if region == "brows":
            return [convex_hull(g["brow_a"]), convex_hull(g["brow_b"])]
        if region == "nose":
            return [convex_hull(g["nose"])]
        return [convex_hull(g["mouth"])]
    k = np.asarray(face.kps, np.float64)
    if region == "face":
        return [_ellipse(eye_avg + down * 0.25 * em, right, 1.15 * iod, 1.65 * em)]
    if region == "eyes":
        return [_ellipse(k[0], right, 0.28 * iod, 0.14 * iod), _ellipse(k[1], right, 0.28 * iod, 0.14 * iod)]
    if region == "brows":
        return [_ellipse(k[i] - down * 0.32 * iod, right, 0.32 * iod, 0.1 * iod) for i in (0, 1)]
    if region == "nose":
        c = eye_avg * 0.4 + k[2] * 0.6
        half = max(np.dot(k[2] - eye_avg, down), 0.2 * em) * 0.65
        return [_ellipse(c, right, 0.24 * iod, half)]
    half_w = np.linalg.norm(k[4] - k[3]) / 2 * 1.2 + 0.05 * iod
    return [_ellipse(mouth_avg, right, half_w, 0.22 * iod)]


def _dilate_polygon(poly: np.ndarray, d: float) -> np.ndarray:
    """Exact dilation of a convex polygon by a disc of radius d (Minkowski sum, disc as a 16-gon)."""
    if d <= 0:
        return poly
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    disc = np.stack([np.cos(t), np.sin(t)], 1) * (d / math.cos(math.pi / 16))  # 16-gon enclosing the disc
    return convex_hull((poly[:, None, :] + disc[None]).reshape(-1, 2))


def _draw(window: torch.Tensor, poly: np.ndarray) -> None:
    """Fill convex `poly` (window pixel coordinates) into window [h, w] with 1 (kornia's polygon fill)."""
    try:
        from kornia.image import draw_convex_polygon
    except ImportError:  # kornia < 0.8.3
        from kornia.utils import draw_convex_polygon
    if len(poly) < 3:
        return
    canvas = window[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        out = draw_convex_polygon(torch.zeros_like(canvas),
                                  torch.as_tensor(poly, dtype=torch.float32, device=window.device)[None],
                                  torch.ones(1, 1, device=window.device))
    window.copy_(torch.maximum(window, out[0, 0]))


def _disc(radius: int, device) -> torch.Tensor:
    r = int(radius)
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return ((yy**2 + xx**2) <= r * r + r).to(device=device, dtype=torch.float32)


def _feather_kernel(feather: float) -> tuple[int, float]:
    sigma = max(feather / 2.5, 0.3)
    k = 2 * int(math.ceil(feather)) + 1
    return max(k, 3), sigma


def rasterize(polys: Sequence[np.ndarray], height: int, width: int, *, dilation: float = 0.0,
              feather: float = 0.0, out: torch.Tensor | None = None, device="cpu") -> torch.Tensor:
    """Union of convex polygons as a [height, width] float mask, grown/shrunk by `dilation` px, blurred by
    `feather` px. Work happens in a window around the polygons; pixels outside it stay exactly 0 (or as they are
    in `out`, which is max-combined in place and returned)."""
    if out is None:
        out = torch.zeros(height, width, dtype=torch.float32, device=device)
    polys = [_dilate_polygon(np.asarray(p, np.float64), dilation) for p in polys if len(p) >= 3]
    if not polys:
        return out
    pts = np.concatenate(polys)
    pad = int(math.ceil(max(feather, 0) + max(-dilation, 0))) + 3
    x0 = max(int(math.floor(pts[:, 0].min())) - pad, 0)
    y0 = max(int(math.floor(pts[:, 1].min())) - pad, 0)
    x1 = min(int(math.ceil(pts[:, 0].max())) + pad + 1, width)
    y1 = min(int(math.ceil(pts[:, 1].max())) + pad + 1, height)
    if x1 <= x0 or y1 <= y0:
        return out
    win = torch.zeros(y1 - y0, x1 - x0, dtype=torch.float32, device=out.device)
    for p in polys:
        _draw(win, p - np.array([x0, y0]))
    if dilation < 0:
        from kornia.morphology import erosion

        r = int(round(-dilation))
        if r > 0:
            win = erosion(win[None, None], _disc(r, win.device), border_type="constant", border_value=0.0)[0, 0]
    if feather > 0:
        from kornia.filters import gaussian_blur2d

        k, sigma = _feather_kernel(feather)
        win = gaussian_blur2d(win[None, None], (k, k), (sigma, sigma), border_type="constant")[0, 0]
        win = torch.where(win < 1.0 / 512, torch.zeros_like(win), win.clamp(0, 1))
    out[y0:y1, x0:x1] = torch.maximum(out[y0:y1, x0:x1], win)
    return out


def _transform(poly: np.ndarray, m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return poly @ m[:2, :2].T + m[:2, 2]


def region_mask(
    faces: Faces,
    regions: str | Iterable[str] = "face",
    *,
    mode: str = "anonymize",
    dilation: float = 0.0,
    feather: float = 0.0,
    coordinates: str = "image",
    crop_info: FaceCrops | None = None,
    device="cpu",
) -> torch.Tensor:
    """Masks of face regions (1 = change).

    Args:
        faces: detected faces (landmarks used when present, else 5-point shapes).
        regions: some of "face", "eyes", "brows", "nose", "mouth", as a list or "eyes+mouth"; their union is used.
        mode: "anonymize" = 1 on the regions; "keep" = the inverse (0 on the regions, 1 elsewhere).
        dilation: grow (>0) or shrink (<0) the regions, in pixels of the output coordinates.
        feather: soften the edges over about this many pixels (Gaussian).
        coordinates: "image" -> [B, H, W], one mask per image with every face of that image;
            "crop" -> [N, S, S], one mask per face in the aligned crop's coordinates (needs `crop_info`).
        crop_info: the FaceCrops from crop_faces (for "crop" coordinates).
        device: torch device of the result.

    Returns:
        float32 mask tensor in 0..1.
    """
    names = parse_regions(regions)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if coordinates == "image":
        h, w = faces.image_size
        out = torch.zeros(faces.batch_size, h, w, dtype=torch.float32, device=device)
        for f in faces:
            polys = [p for r in names for p in region_polygons(f, r)]
            rasterize(polys, h, w, dilation=dilation, feather=feather, out=out[f.image_index])
    elif coordinates == "crop":
        if crop_info is None:
            raise ValueError("crop-coordinate masks need the FACEANON_FACE_CROPS value from Crop Faces")
        s = crop_info.size
        out = torch.zeros(len(crop_info), s, s, dtype=torch.float32, device=device)
        for i, f in enumerate(crop_info.faces):
            fwd = crop_info.forward[i].cpu().numpy()
            polys = [_transform(p, fwd) for r in names for p in region_polygons(f, r)]
            rasterize(polys, s, s, dilation=dilation, feather=feather, out=out[i])
    else:
        raise ValueError(f"coordinates must be one of {COORDINATES}, got {coordinates!r}")
    return 1.0 - out if mode == "keep" else out


def face_mask_in_crop(face: Face, forward: np.ndarray, size: int, device="cpu") -> torch.Tensor:
    """[size, size] binary face-shaped mask (face region incl. forehead) in crop coordinates."""
    polys = [_transform(p, forward) for p in region_polygons(face, "face")]
    return rasterize(polys, size, size, device=device)
