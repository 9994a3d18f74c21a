"""Video metrics per track (faceanon.evaluate.video) on a synthetic clip from scikit-image photos: one stand-in per
track scores consistent and leak-free, a new face per frame scores inconsistent and flickers, `unchanged` leaks.

The detector and recognizer are small stand-ins (the evaluation stack's dlib is not needed): magenta discs are faces,
and a face's descriptor is its coarse texture, so "same texture" = "same person"."""

from __future__ import annotations

import numpy as np
import pytest

from faceanon.evaluate.models import Box
from faceanon.evaluate.video import evaluate_video, follow, markdown
from dev.onnx_packs import draw_face
from tests.video_clips import Person, render

pytestmark = pytest.mark.eval_env_optional

SIZE = (128, 192)


def walk(i):
    return [Person("astronaut", (40 + 5 * i, 60), 48), Person("camera", (150 - 4 * i, 70), 44)]


def detect(rgb):
    from scipy import ndimage

    f = rgb.astype(np.float32) / 255
    magenta = (np.minimum(f[..., 0], f[..., 2]) - f[..., 1]) > 0.35
    labels, n = ndimage.label(magenta)
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is not None and (sl[0].stop - sl[0].start) > 15:
            boxes.append(Box(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return sorted(boxes, key=lambda b: b.center)


def embed(rgb, box):
    c = rgb[box.y0 + box.height // 4:box.y1 - box.height // 4, box.x0 + box.width // 4:box.x1 - box.width // 4]
    g = c.astype(np.float64).mean(2)
    h, w = (g.shape[0] // 4) * 4, (g.shape[1] // 4) * 4
    v = g[:h, :w].reshape(4, h // 4, 4, w // 4).mean((1, 3)).ravel()
    v = v - v.mean()
    return v / max(np.linalg.norm(v), 1e-9)


@pytest.fixture(scope="module")
def clip():
    originals = list(render([("astronaut", [walk(i) for i in range(6)])], SIZE))
    base = render([("astronaut", [[] for _ in range(6)])], SIZE).astype(np.float32) / 255

    def redraw(seed_of):
        out = []
        for i in range(6):
            img = base[i]
            for k, p in enumerate(walk(i)):
                img = draw_face(img, p.center, p.diameter + 2, seed_of(i, k))
            out.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
        return out

    return originals, {"one stand-in per track": redraw(lambda i, k: 100 + k),
                       "a new face per frame": redraw(lambda i, k: 200 + 10 * i + k)}


def test_metrics_tell_one_stand_in_from_per_frame_faces(clip):
    originals, results = clip
    summary = evaluate_video(originals, results, detect, embed, baselines=("blur", "unchanged"))
    assert summary["tracks"] == 2 and summary["frames"] == 6
    m = {name: v["mean"] for name, v in summary["methods"].items()}
    assert m["one stand-in per track"]["consistency"] == 1.0 and m["one stand-in per track"]["leak_rate"] == 0.0
    assert m["a new face per frame"]["consistency"] < 0.3 and m["a new face per frame"]["leak_rate"] == 0.0
    assert m["a new face per frame"]["flicker"] > 1.25 * m["one stand-in per track"]["flicker"]
    assert m["unchanged"]["leak_rate"] == 1.0 and m["unchanged"]["flicker"] == pytest.approx(1.0)
    for name in m:
        assert m[name]["detection_recall"] is not None
    table = markdown(summary)
    assert table.count("\n") == 1 + 4 and "| blur |" in table


def test_follow_chains_by_overlap_and_bad_input_is_refused(clip):
    originals, results = clip
    tracks = follow([detect(f) for f in originals])
    assert [sorted(t.boxes) for t in tracks] == [list(range(6))] * 2
    with pytest.raises(ValueError, match="at least 2 frames"):
        evaluate_video(originals[:1], {}, detect, embed)
    with pytest.raises(ValueError, match=r"method 'x' has 5 frame\(s\), the original 6"):
        evaluate_video(originals, {"x": originals[:5]}, detect, embed)
