"""Thumbnails of evaluated photos with their face boxes drawn, for the HTML report."""

from __future__ import annotations

import numpy as np


def tile_png(rgb: np.ndarray, boxes, texts: list[str], flags: list[bool | None], height: int) -> bytes:
    """A thumbnail `height` px high with the face boxes drawn (red: re-identified, green: not, white: original)
    and a short label per box, as PNG bytes."""
    import cv2

    scale = height / rgb.shape[0]
    width = max(1, round(rgb.shape[1] * scale))
    thumb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    thumb = np.ascontiguousarray(thumb)
    for box, text, flag in zip(boxes, texts, flags, strict=False):
        color = (255, 255, 255) if flag is None else ((255, 40, 40) if flag else (40, 220, 40))
        p0 = (round(box.x0 * scale), round(box.y0 * scale))
        p1 = (round(box.x1 * scale) - 1, round(box.y1 * scale) - 1)
        cv2.rectangle(thumb, p0, p1, color, 1)
        cv2.putText(thumb, text, (p0[0], max(9, p0[1] - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.33, color, 1,
                    cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR))
    return buf.tobytes() if ok else b""
