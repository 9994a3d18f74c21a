"""Face detection + identity embedding on CPU: FaceAnon's `detect` against insightface's own FaceAnalysis.get,
side by side in one run, on the same models and the same photos.

Models: the synthesized buffalo_l pack of dev/onnx_packs.py built with `compute=True`, i.e. with the real models'
compute cost (about 10 GFLOPs per 640x640 detector pass like SCRFD-10G, about 6.5 GFLOPs per face like the
ResNet-50 ArcFace) and outputs that find the synthetic faces drawn here. Photos: scikit-image's astronaut scaled to
1024x1024 and 4096x4096 with synthetic faces of several sizes drawn on it (small ones in the large photo).

Rows:
  insightface     FaceAnalysis(allowed_modules=[detection, recognition]).get: passes at 128 and 640 px;
  faceanon        detect(embeddings=True, landmarks=False) with the defaults (min_face_size 24: large photos
                  are also scanned in tiles so small faces are found);
  faceanon-2pass  the same with min_face_size large enough that no tiles are needed: the same two passes as
                  insightface, to compare the pipelines' own cost.

    python benchmarks/bench_faces.py              # about 1 minute on 2 cores
    python benchmarks/bench_faces.py --repeats 5
"""

# ruff: noqa: T201  (a benchmark prints its table)
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceanon import faces as F  # noqa: E402, N812
from dev.onnx_packs import draw_face, write_pack  # noqa: E402

PHOTOS = {
    1024: [((300, 330), 220, 1), ((700, 300), 120, 2), ((520, 760), 300, 3), ((880, 820), 64, 4)],
    4096: [((600, 700), 900, 1), ((2600, 1200), 400, 2), ((1700, 3000), 200, 3), ((3500, 3400), 120, 4),
           ((400, 3600), 64, 5), ((3800, 300), 56, 6), ((2200, 2100), 48, 7), ((1000, 2200), 60, 8)],
}


def photo(size: int) -> np.ndarray:
    from skimage.data import astronaut

    base = torch.from_numpy(astronaut()).float().div(255).permute(2, 0, 1)[None]
    img = torch.nn.functional.interpolate(base, size=(size, size), mode="bicubic", align_corners=False)
    img = img.clamp(0, 1)[0].permute(1, 2, 0).numpy().copy()
    for c, d, s in PHOTOS[size]:
        img = draw_face(img, c, d, s)
    return img


def timed(fns: dict, repeats: int) -> dict:
    """{label: (median seconds, last result)}; the pipelines are interleaved repeat by repeat so that load changes
    on a shared machine hit them alike."""
    results = {label: fn() for label, fn in fns.items()}  # warm-up: sessions per input size, caches
    times = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            t = time.perf_counter()
            results[label] = fn()
            times[label].append(time.perf_counter() - t)
    return {label: (statistics.median(times[label]), results[label]) for label in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    import onnxruntime
    from insightface.app import FaceAnalysis

    with tempfile.TemporaryDirectory() as tmp:
        pack = write_pack(Path(tmp) / "models" / "buffalo_l", "buffalo_l", compute=True)
        ours = F.load_face_analysis("buffalo_l", [tmp], provider="CPU")
        theirs = FaceAnalysis(name=str(pack), allowed_modules=["detection", "recognition"],
                              providers=["CPUExecutionProvider"])
        theirs.prepare(ctx_id=-1)
        print(f"onnxruntime {onnxruntime.__version__}, insightface {__import__('insightface').__version__}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} torch threads; CPUExecutionProvider; "
              f"median of {args.repeats}")
        print(f"{'photo':>9}  {'pipeline':<15} {'faces':>7} {'passes':>6} {'total ms':>9} {'ms/face':>8} "
              f"{'total ratio':>11} {'per-face ratio':>14}")
        for size in (1024, 4096):
            img = photo(size)
            bgr = np.ascontiguousarray((img[..., ::-1] * 255).round().astype(np.uint8))
            tensor = torch.from_numpy(img)[None]
            n_true = len(PHOTOS[size])
            configs = {"faceanon": 24, "faceanon-2pass": 16 * size / 640}
            fns = {"insightface": lambda b=bgr: theirs.get(b)}
            for label, min_face in configs.items():
                fns[label] = lambda m=min_face, t=tensor: F.detect(ours, t, min_face_size=m, landmarks=False,
                                                                   if_no_face=F.IfNoFace.FLAG)
            res = timed(fns, args.repeats)
            rows = [("insightface", res["insightface"][0], len(res["insightface"][1]), 2)]
            for label, min_face in configs.items():
                passes = sum(len(p.tiles) for p in F.scan_plan(size, size, ours.det_size, min_face))
                rows.append((label, res[label][0], len(res[label][1]), passes))
            base_total, base_face = rows[0][1], rows[0][1] / max(rows[0][2], 1)
            for label, t, n, passes in rows:
                per_face = t / max(n, 1)
                print(f"{size:>4}x{size:<4}  {label:<15} {n:>3}/{n_true:<3} {passes:>6} {t * 1000:>9.0f} "
                      f"{per_face * 1000:>8.0f} {t / base_total:>11.2f} {per_face / base_face:>14.2f}")


if __name__ == "__main__":
    main()
