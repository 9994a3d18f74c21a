"""Video metrics, per track: is each person one consistent stand-in, does the original leak, does the face flicker?

The clip is a folder of frames (PNG/JPEG, in name order) for the original and one folder per method, same names.
People are followed in the ORIGINAL frames with the harness's independent detector (dlib HOG, not the pack's
insightface): detections of consecutive frames are chained by box overlap (IoU >= `match_iou`, greedy, up to
`max_gap` missed frames), so the evaluation does not trust the tracker it evaluates. For each track and method:

- **consistency**: fraction of pairs of the track's output frames that the independent recognizer (dlib, 128-D,
  Euclidean distance < `threshold` = same person) sees as the same person. High = one stand-in; today's per-frame
  anonymization invents a new person per frame and scores low.
- **leak rate**: fraction of the track's frames in which the output face is still recognised as the original
  person of that frame (distance < threshold). 0 is the goal; `unchanged` (the control) is 1.
- **flicker**: mean absolute frame-to-frame change of the output inside the face box, divided by the same for the
  original (1 = as much change as the real motion; above 1 = added flicker).
- **detection recall**: fraction of the track's frames in which the independent detector still finds a face in
  the output at the track's box (IoU >= match_iou): a stand-in should still look like a face; blur fails this.

Baselines in the same table: `blur` (the harness's Gaussian blur of every face box, frame by frame) and
`unchanged`; today's per-frame FaceAnonymize is evaluated as one of the methods (give its output folder).

Command line (evaluation venv):

    .venv-eval/bin/python -m faceanon.evaluate.video --originals frames/ --results tracked=out_tracks/ \
        --results per_frame=out_faceanonymize/ --json video_metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from .baselines import BaselineSettings, apply_baseline
from .models import Box

DLIB_THRESHOLD = 0.6

Detect = Callable[[np.ndarray], list[Box]]
Embed = Callable[[np.ndarray, Box], np.ndarray | None]


@dataclass
class EvalTrack:
    """A person in the original frames: frame -> box."""

    id: int
    boxes: dict[int, Box] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return max(self.boxes)


def follow(detections: Sequence[list[Box]], match_iou: float = 0.3, max_gap: int = 2) -> list[EvalTrack]:
    """Chain per-frame detections into tracks by box overlap with each track's last box (greedy, best IoU first)."""
    tracks: list[EvalTrack] = []
    for frame, boxes in enumerate(detections):
        open_ = [t for t in tracks if frame - t.last <= max_gap + 1]
        pairs = sorted(((t.boxes[t.last].iou(b), i, j) for i, t in enumerate(open_) for j, b in enumerate(boxes)),
                       reverse=True)
        used_t, used_b = set(), set()
        for iou, i, j in pairs:
            if iou < match_iou or i in used_t or j in used_b:
                continue
            open_[i].boxes[frame] = boxes[j]
            used_t.add(i)
            used_b.add(j)
        for j, b in enumerate(boxes):
            if j not in used_b:
                tracks.append(EvalTrack(len(tracks), {frame: b}))
    return tracks


def _region(frame: np.ndarray, box: Box) -> np.ndarray:
    return frame[max(box.y0, 0):max(box.y1, 0), max(box.x0, 0):max(box.x1, 0)].astype(np.float64)


def track_metrics(track: EvalTrack, originals: Sequence[np.ndarray], outputs: Sequence[np.ndarray], detect: Detect,
                  embed: Embed, threshold: float = DLIB_THRESHOLD, match_iou: float = 0.3) -> dict:
    """The four metrics of one track for one method (see the module docstring); None where not measurable."""
    frames = sorted(track.boxes)
    out_desc, leaks, found = {}, [], []
    for f in frames:
        box = track.boxes[f]
        d_out = embed(outputs[f], box)
        d_orig = embed(originals[f], box)
        if d_out is not None:
            out_desc[f] = d_out
            if d_orig is not None:
                leaks.append(float(np.linalg.norm(d_out - d_orig)) < threshold)
        found.append(any(b.iou(box) >= match_iou for b in detect(outputs[f])))
    pairs = list(combinations(sorted(out_desc), 2))
    same = [float(np.linalg.norm(out_desc[a] - out_desc[b])) < threshold for a, b in pairs]
    moves_out, moves_orig = [], []
    for a, b in zip(frames, frames[1:], strict=False):
        if b != a + 1:
            continue
        box = track.boxes[b]
        moves_out.append(np.abs(_region(outputs[b], box) - _region(outputs[a], box)).mean())
        moves_orig.append(np.abs(_region(originals[b], box) - _region(originals[a], box)).mean())
    flicker = None
    if moves_out and float(np.mean(moves_orig)) > 0:
        flicker = float(np.mean(moves_out) / np.mean(moves_orig))
    return {"track": track.id, "frames": len(frames), "first": frames[0], "last": frames[-1],
            "consistency": float(np.mean(same)) if same else None,
            "leak_rate": float(np.mean(leaks)) if leaks else None,
            "flicker": flicker,
            "detection_recall": float(np.mean(found)) if found else None}


def evaluate_video(originals: Sequence[np.ndarray], results: dict[str, Sequence[np.ndarray]], detect: Detect,
                   embed: Embed, baselines: Sequence[str] = ("blur", "unchanged"), threshold: float = DLIB_THRESHOLD,
                   match_iou: float = 0.3, max_gap: int = 2,
                   baseline_settings: BaselineSettings | None = None) -> dict:
    """Per method (the given results, then the baselines) and per track: the metrics, and their means.

    Args:
        originals: the original frames (RGB uint8), in order.
        results: method name -> its output frames (same count and size as `originals`).
        detect / embed: the independent detector and recognizer (`tools_functions` makes them from dlib).
        baselines: computed here from the originals ("blur", "pixelate", "mask", "unchanged").
    """
    n = len(originals)
    if n < 2:
        raise ValueError(f"video metrics need a clip of at least 2 frames, got {n}")
    for name, frames in results.items():
        if len(frames) != n:
            raise ValueError(f"method {name!r} has {len(frames)} frame(s), the original {n}: give the same frames")
        bad = [i for i, (a, b) in enumerate(zip(originals, frames, strict=True)) if a.shape != b.shape]
        if bad:
            raise ValueError(f"method {name!r}: frame {bad[0]} is {frames[bad[0]].shape[1]}x{frames[bad[0]].shape[0]}"
                             f", the original {originals[bad[0]].shape[1]}x{originals[bad[0]].shape[0]}")
    detections = [detect(f) for f in originals]
    tracks = follow(detections, match_iou, max_gap)
    settings = baseline_settings or BaselineSettings()
    methods = dict(results)
    for name in baselines:
        methods[name] = [apply_baseline(name, f, dets, settings) for f, dets in zip(originals, detections,
                                                                                       strict=True)]
    table = {}
    for name, frames in methods.items():
        rows = [track_metrics(t, originals, frames, detect, embed, threshold, match_iou) for t in tracks
                if len(t.boxes) >= 2]
        means = {}
        for key in ("consistency", "leak_rate", "flicker", "detection_recall"):
            values = [r[key] for r in rows if r[key] is not None]
            means[key] = float(np.mean(values)) if values else None
        table[name] = {"tracks": rows, "mean": means}
    return {"frames": n, "tracks": len(tracks), "threshold": threshold, "methods": table}


def markdown(summary: dict) -> str:
    """The mean metrics per method as a Markdown table."""
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["| method | consistency (higher: one stand-in) | leak rate (lower) | flicker (1 = as the original) "
             "| detection recall |", "| --- | --- | --- | --- | --- |"]
    for name, m in summary["methods"].items():
        mean = m["mean"]
        lines.append(f"| {name} | {fmt(mean['consistency'])} | {fmt(mean['leak_rate'])} | {fmt(mean['flicker'])} "
                     f"| {fmt(mean['detection_recall'])} |")
    return "\n".join(lines)


def tools_functions(tools) -> tuple[Detect, Embed]:
    """(detect, embed) from the harness's `FaceTools` (dlib HOG detector, dlib 128-D recognizer)."""
    def embed(rgb: np.ndarray, box: Box):
        try:
            return tools.descriptor(rgb, tools.landmarks5(rgb, box))
        except RuntimeError:
            return None

    return tools.detect, embed


def main(argv=None) -> int:
    from . import SETUP_HINT, missing_eval_packages
    from .images import list_images, read_image

    parser = argparse.ArgumentParser(description="Video metrics per track (consistency, leak rate, flicker, "
                                                 "detection recall) with blur and unchanged baselines.")
    parser.add_argument("--originals", type=Path, required=True, help="folder of the original frames")
    parser.add_argument("--results", action="append", default=[], metavar="NAME=FOLDER",
                        help="a method's output frames (same file names); repeat for several methods")
    parser.add_argument("--json", type=Path, help="write the full table here")
    args = parser.parse_args(argv)
    missing = missing_eval_packages()
    if missing:
        parser.error(f"missing evaluation packages {', '.join(missing)}: {SETUP_HINT}")
    names = list_images(args.originals, "originals")
    originals = [read_image(p) for p in names]
    results = {}
    for spec in args.results:
        if "=" not in spec:
            parser.error(f"--results {spec!r}: expected NAME=FOLDER")
        name, folder = spec.split("=", 1)
        results[name] = [read_image(Path(folder) / p.name) for p in names]
    from .models import FaceTools

    summary = evaluate_video(originals, results, *tools_functions(FaceTools()))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    sys.stdout.write(markdown(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
