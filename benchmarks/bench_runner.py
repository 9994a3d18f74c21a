"""Headless runner throughput: items per minute, embedded (one process) vs Ray Data with 1 and 2 local actors,
side by side in one run, on the same photos, tiny models and workflow.

Models: the tests' stand-ins from dev/ (random SD1.5-layout checkpoint with a shallow UNet, FaceID file with real
key names, synthesized buffalo_l pack). Photos: 128x128 synthetic portraits, one face each.
Workflow: workflows/faceanon_nullface_sd15_keep_eyes_mouth.json (UI format) with `--set` cutting the work to
resolution 64 and 3 steps, so the numbers are about the runner's overhead and scaling, not diffusion.

Each configuration is `python -m faceanon.run` in a fresh process and session with one torch thread per worker (on
a shared machine read the ratios: 2 actors share their session's CPU with the rest of the load). Columns:
  wall          seconds from start to exit (ComfyUI boot, model loading, all items, shutdown);
  items/min     items / wall;
  steady        items per minute between the first and the last manifest record (boot and load excluded);
  vs embedded   steady rate relative to the embedded runner.

    COMFYUI_PATH=~/ComfyUI python benchmarks/bench_runner.py            # about 10 minutes on 2 cores
    COMFYUI_PATH=~/ComfyUI python benchmarks/bench_runner.py --items 24 --repeats 3
"""

# ruff: noqa: T201  (a benchmark prints its table)
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKFLOW = ROOT / "workflows" / "faceanon_nullface_sd15_keep_eyes_mouth.json"
FAST = "resolution = 64\nsteps = 3\nmask_delay = 1"


def make_assets(root: Path, n: int) -> None:
    """Tiny models under root/models (ComfyUI's layout) and n photos under root/photos. Runs in a child process
    (`--make-assets`): the checkpoint is written with ComfyUI's modules, booted on the CPU here."""
    from comfy.cli_args import args

    args.cpu = True
    from PIL import Image

    from dev.faceid_files import faceid_state_dict, layout_from_unet_config, write_bin
    from dev.onnx_packs import draw_face, write_pack
    from dev.tiny_models import SD15_SHALLOW_UNET, write_sd15_checkpoint

    models = root / "models"
    for sub in ("checkpoints", "ipadapter"):
        (models / sub).mkdir(parents=True)
    write_sd15_checkpoint(models / "checkpoints" / "tiny.safetensors")
    layers = layout_from_unet_config(SD15_SHALLOW_UNET)
    write_bin(faceid_state_dict(layers, rank=8, seed=4, kv_scale=0.2), models / "ipadapter" / "tiny_faceid.bin")
    write_pack(models / "insightface" / "models" / "buffalo_l", "buffalo_l")
    (root / "photos").mkdir()
    for k in range(n):
        background = np.full((128, 128, 3), (0.45, 0.65, 0.45), np.float32)  # greenish: no magenta but the face
        face = draw_face(background, (56 + k % 16, 64), 64 + k % 20, k)
        Image.fromarray((face * 255).round().astype(np.uint8)).save(root / "photos" / f"p{k:03d}.png")


def prepare(root: Path, comfyui: Path, n: int) -> Path:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(comfyui)])}
    subprocess.run([sys.executable, __file__, "--make-assets", str(root), "--items", str(n)], env=env, check=True)
    return root / "photos"


def run(label: str, root: Path, photos: Path, extra: list[str]) -> dict:
    out = root / f"out_{label.replace(' ', '_')}"
    manifest = out / "faceanon_manifest.jsonl"
    cmd = [sys.executable, "-m", "faceanon.run", "--workflow", str(WORKFLOW), "--input", str(photos),
           "--output", str(out), "--models-dir", str(root / "models"), "--checkpoint", "tiny.safetensors",
           "--id-adapter", "tiny_faceid.bin", "--set", "FaceAnonLoadFaceAnalysis.provider=CPU",
           "--set", f"FaceAnonymize.overrides={json.dumps(FAST)}", "--threads", "1", "--no-progress", *extra]
    # one thread per worker for torch (--threads) and for OpenMP / onnxruntime (Ray sets OMP_NUM_THREADS for its
    # actors from num_cpus; the embedded run gets the same)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    # a session of its own, like Ray's worker processes: with Linux's autogroup scheduling (sched_autogroup_enabled)
    # each session shares the CPU equally with the others, so on a busy machine a run left in this script's
    # session would get less CPU than Ray's workers
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    stamps, seen = [], 0
    while proc.poll() is None:
        lines = manifest.read_text().count("\n") if manifest.exists() else 0
        stamps += [time.monotonic() - start] * (lines - seen)
        seen = lines
        time.sleep(0.1)
    wall = time.monotonic() - start
    lines = manifest.read_text().count("\n") if manifest.exists() else 0
    stamps += [wall] * (lines - seen)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
    done = sum(json.loads(line)["status"] == "done" for line in manifest.read_text().splitlines())
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 if len(stamps) > 1 and stamps[-1] > stamps[0] else 0
    return {"label": label, "items": done, "wall": wall, "per_min": done / wall * 60, "steady": steady}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2,
                   help="rounds; the order alternates (forward, backward) so that load changes hit all alike")
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"))
    p.add_argument("--make-assets", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.make_assets:
        make_assets(args.make_assets, args.items)
        return
    if not args.comfyui:
        raise SystemExit("set COMFYUI_PATH (or --comfyui) to a ComfyUI folder")
    os.environ["COMFYUI_PATH"] = args.comfyui
    configs = {"embedded": [], **{f"ray {w} actor(s)": ["--ray", "local", "--workers", str(w), "--object-store-mb",
                                                          "100"] for w in (1, 2)}}
    runs: dict[str, list[dict]] = {label: [] for label in configs}
    with tempfile.TemporaryDirectory(prefix="bench_runner_") as tmp:
        root = Path(tmp)
        photos = prepare(root, Path(args.comfyui), args.items)
        for r in range(args.repeats):
            for label in (list(configs) if r % 2 == 0 else list(configs)[::-1]):
                shutil.rmtree(root / f"out_{label.replace(' ', '_')}", ignore_errors=True)
                runs[label].append(run(label, root, photos, configs[label]))
    print(f"{args.items} items, tiny SD1.5-layout model, CPU ({os.cpu_count()} cores), one torch thread per worker; "
          f"median of {args.repeats} alternating rounds")
    print(f"{'runner':<18} {'items':>5} {'wall s':>8} {'items/min':>10} {'steady/min':>11} {'vs embedded':>12}")
    base = statistics.median(r["steady"] for r in runs["embedded"])
    for label, rows in runs.items():
        wall = statistics.median(r["wall"] for r in rows)
        steady = statistics.median(r["steady"] for r in rows)
        print(f"{label:<18} {rows[0]['items']:>5} {wall:>8.1f} {args.items / wall * 60:>10.1f} {steady:>11.1f} "
              f"{steady / base if base else float('nan'):>11.2f}x")


if __name__ == "__main__":
    main()
