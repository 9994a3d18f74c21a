"""Tracking's cost next to detection's, and frames per second of detection + tracking at 720p on CPU, side by side.

Models: the synthesized buffalo_l pack of dev/onnx_packs.py built with `compute=True` (the real models' compute
cost: about 10 GFLOPs per 640x640 detector pass like SCRFD-10G, about 6.5 GFLOPs per face like the ResNet-50
ArcFace). Clip: 1280x720 frames of scikit-image's astronaut photo with three synthetic people walking (one leaves
and comes back, one is gone for two frames), built like the tests' clips.

Rows (per frame, median of the repeats; the rows are interleaved repeat by repeat so load changes hit them alike):
  detection            detect() on every frame (boxes, keypoints, landmarks, ArcFace embeddings): what every
                       frame costs without tracking;
  tracking only        scene cuts + association + gap filling + smoothing on those detections (no detector);
  detect + track k=1   track_video with detection on every frame;
  detect + track k=3   track_video detecting every 3rd frame, plus the extra passes at track starts/ends.

    python benchmarks/bench_tracking.py               # about 2 minutes on 2 busy cores
    python benchmarks/bench_tracking.py --frames 24 --repeats 3
"""

# ruff: noqa: T201  (a benchmark prints its table)
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceanon import faces as F  # noqa: E402, N812
from faceanon.tracking import scene_cuts, track_faces, track_video  # noqa: E402
from dev.onnx_packs import draw_face, write_pack  # noqa: E402


def clip(n: int, size=(720, 1280)) -> torch.Tensor:
    """n frames [n, 720, 1280, 3]: three people walking over the astronaut photo."""
    import skimage.data
    import skimage.transform

    bg = skimage.transform.resize(skimage.data.astronaut() / 255.0, size, anti_aliasing=True).astype(np.float32)
    bg[..., 1] = np.clip(bg[..., 1] * 0.8 + 0.25, 0, 1)
    frames = []
    for i in range(n):
        img = draw_face(bg, (200 + 20 * i, 300), 140, seed=1)
        if not 4 <= i < 8:  # leaves and comes back
            img = draw_face(img, (900 - 10 * i, 250 + 3 * i), 110 + 2 * i, seed=2)
        if i not in (5, 6):  # two frames without this face: a gap the tracker fills
            img = draw_face(img, (640, 520), 90, seed=3)
        else:
            img = img.copy()
        frames.append(img)
    return torch.from_numpy(np.stack(frames))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        write_pack(Path(tmp) / "models" / "buffalo_l", compute=True)
        analysis = F.load_face_analysis("buffalo_l", [tmp], provider="CPU")
        frames = clip(args.frames)
        n = len(frames)

        def detect(indices):
            found = F.detect(analysis, frames[indices], if_no_face=F.IfNoFace.FLAG)
            return [replace(f, image_index=indices[f.image_index]) for f in found]

        detections = detect(list(range(n)))  # warm-up, and the input of "tracking only"
        rows = {
            "detection": lambda: detect(list(range(n))),
            "tracking only": lambda: track_faces(detections, n, image_size=tuple(frames.shape[1:3]),
                                                 cuts=scene_cuts(frames)),
            "detect + track k=1": lambda: track_video(detect, frames, detect_every=1),
            "detect + track k=3": lambda: track_video(detect, frames, detect_every=3),
        }
        times = {k: [] for k in rows}
        results = {}
        for _ in range(args.repeats):
            for label, fn in rows.items():
                t0 = time.perf_counter()
                results[label] = fn()
                times[label].append(time.perf_counter() - t0)
    per_frame = {k: statistics.median(v) / n for k, v in times.items()}
    base = per_frame["detection"]
    print(f"{n} frames of 1280x720, {torch.get_num_threads()} torch thread(s), onnxruntime CPU, "
          f"median of {args.repeats}")
    print(f"{'row':<22}{'ms / frame':>12}{'fps':>8}{'x detection':>13}")
    for label, t in per_frame.items():
        print(f"{label:<22}{1000 * t:>12.1f}{1 / t:>8.2f}{t / base:>13.3f}")
    tracks = results["detect + track k=3"]
    print(f"tracks (k=1): {len(results['detect + track k=1'])}, (k=3): {len(tracks)}; "
          f"detector ran on {len(tracks.observed)} of {n} frames with k=3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
