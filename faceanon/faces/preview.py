"""Preview images: numbered boxes, keypoints and landmarks; images without a face get a red frame and label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._image import as_bhwc, rgb
from .types import Faces

_COLORS = [(0, 220, 90), (0, 160, 255), (255, 200, 0), (255, 90, 200), (120, 255, 255), (255, 140, 40)]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_faces(images: torch.Tensor, faces: Faces, labels: Sequence[str] | None = None,
               colors: Sequence[int] | None = None) -> torch.Tensor:
    """[B, H, W, 3] float copy of `images` with every face drawn: box, global face number, score, 5 keypoints
    (eyes green), 106 landmarks as dots. Images listed in `faces.missing` get a thick red frame and
    "NO FACE - NOT ANONYMIZED". `labels` / `colors` (one per face) replace the number-and-score label and the
    colour index (e.g. track numbers, so one person keeps one colour)."""
    from PIL import Image, ImageDraw

    images = as_bhwc(images)
    b, h, w, _ = images.shape
    arr = (rgb(images).detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    line = max(1, round(max(h, w) / 400))
    font = _font(max(12, round(max(h, w) / 45)))
    out = []
    for i in range(b):
        im = Image.fromarray(arr[i])
        d = ImageDraw.Draw(im)
        for n in faces.indices_for_image(i):
            f = faces[n]
            col = _COLORS[(n if colors is None else colors[n]) % len(_COLORS)]
            x1, y1, x2, y2 = (float(v) for v in f.box)
            d.rectangle([x1, y1, x2, y2], outline=col, width=line)
            if f.landmarks is not None:
                r = max(1, line // 2)
                for x, y in f.landmarks:
                    d.ellipse([x - r, y - r, x + r, y + r], fill=col)
            r = line + 1
            for k, (x, y) in enumerate(f.kps):
                kc = (0, 255, 0) if k < 2 else (255, 60, 60)
                d.ellipse([x - r, y - r, x + r, y + r], fill=kc)
            label = f"{n} ({f.score:.2f})" if labels is None else labels[n]
            tb = d.textbbox((0, 0), label, font=font)
            ty = y1 - (tb[3] - tb[1]) - 2 * line
            ty = ty if ty >= 0 else y2 + line
            d.rectangle([x1, ty, x1 + tb[2] - tb[0] + 2 * line, ty + tb[3] - tb[1] + 2 * line], fill=col)
            d.text((x1 + line, ty + line - tb[1]), label, fill=(0, 0, 0), font=font)
        if i in faces.missing:
            fw = max(3, round(max(h, w) / 80))
            d.rectangle([0, 0, w - 1, h - 1], outline=(255, 0, 0), width=fw)
            label = "NO FACE - NOT ANONYMIZED"
            tb = d.textbbox((0, 0), label, font=font)
            d.rectangle([fw, fw, fw + tb[2] - tb[0] + 8, fw + tb[3] - tb[1] + 8], fill=(255, 0, 0))
            d.text((fw + 4, fw + 4 - tb[1]), label, fill=(255, 255, 255), font=font)
        out.append(np.asarray(im))
    return torch.from_numpy(np.stack(out)).float().div(255.0)
