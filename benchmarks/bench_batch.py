"""Throughput of FaceAnonymize's sampling core on a photo with 1, 4 and 16 faces: face by face against batched.

Side by side in one run, for both presets (NullFace: DDPM, 30 steps, face gate; Reverse Personalization: DPM-Solver++
2M SDE, 100 steps, CFG in the inversion), through `nodes.anonymize.sample_all` (inversion + identity-guided replay of
every face; detection, crop and paste are per-image costs that batching does not change):

  1. sequential UNet calls and model evaluations (batch rows) per photo at the presets' full step counts and crop
     sizes, on a full-width SD1.5-layout UNet with a counting stub in place of its calls (the chunk sizes come from
     the free memory ComfyUI reports, the model's memory estimate and its weights, not from its output): face by face
     (faces_per_call = 1, steps_per_call = 1: the old path) and batched (both 0: chunk sizes from the free memory)
     with the free memory this machine reports, with 80 GiB (an H100's) and with unbounded memory;
  2. wall time, face by face vs batched from free memory, on a tiny UNet (full step counts, 64 px crops) and on the
     full-width UNet (2 steps, 128 px crops: the 2 shared CPU cores of the development machine).

The VAE is a cheap stand-in (8x8 average pooling / nearest upsampling) in every mode: its cost is per face either way.

    python benchmarks/bench_batch.py            # needs a ComfyUI (COMFYUI_PATH or ~/ComfyUI) and torch
    python benchmarks/bench_batch.py --quick    # wall time of the full-width UNet for 1 and 4 faces only
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_guidance import RowClock, patched_model  # noqa: E402
from benchmarks.bench_inversion import SD15_FULL_UNET, boot  # noqa: E402

FACES = (1, 4, 16)
PRESET_NAMES = {"NullFace (SD1.5)": "NullFace", "Reverse Personalization (SDXL)": "RevPers"}


class StubVAE:
    """encode: [n, S, S, 3] -> [n, 4, S/8, S/8] by 8x8 average pooling; decode: nearest upsampling back."""

    def encode(self, pixels):
        lat = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8) * 2 - 1
        return torch.cat([lat, lat.mean(1, keepdim=True)], 1)

    def decode(self, latent):
        img = torch.nn.functional.interpolate(latent[:, :3], scale_factor=8, mode="nearest")
        return ((img + 1) / 2).clamp(0, 1).movedim(1, -1)


class CountingStub(RowClock):
    """Counts calls and rows without running the UNet (returns the input as the denoised latent)."""

    def __init__(self):
        super().__init__()

        def wrapper(apply_model, args):
            self.calls += 1
            self.rows += args["input"].shape[0]
            return args["input"]

        self.wrapper = wrapper


def photo(n: int, size: int, gate: bool, seed: int = 0):
    """n face crops, ArcFace-like embeddings, seeds and disc masks (when the preset gates the face)."""
    g = torch.Generator().manual_seed(seed)
    crops = torch.rand(n, size, size, 3, generator=g)
    embeddings = torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=1)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((x - size / 2) ** 2 + (y - size / 2) ** 2) < (0.35 * size) ** 2).float()
    masks = disc.expand(n, size, size).clone() if gate else None
    return crops, embeddings, [1000 + k for k in range(n)], masks


def run(host, model, clock, settings, n, ctx_dim):
    """sample_all on n faces with `settings`; returns (calls, rows, seconds)."""
    anon, gd = host.pack("nodes.anonymize"), host.pack("nodes.guidance")
    m = model.clone()
    m.set_model_unet_function_wrapper(clock.wrapper)
    positive = [[torch.randn(1, 77, ctx_dim, generator=torch.Generator().manual_seed(0)), {}]]
    negative = gd.zero_out(positive) if settings.zero_negative else positive
    crops, embeddings, seeds, masks = photo(n, settings.resolution, settings.gate_face)
    clock.calls, clock.rows = 0, 0
    t = time.perf_counter()
    anon.sample_all(m, StubVAE(), crops, embeddings, seeds, settings, positive, negative, None, masks)
    return clock.calls, clock.rows, time.perf_counter() - t


def modes(preset):
    return {"face by face": dataclasses.replace(preset, faces_per_call=1, steps_per_call=1),
            "batched": dataclasses.replace(preset, faces_per_call=0, steps_per_call=0)}


@contextlib.contextmanager
def free_memory(gib: float | None):
    """ComfyUI's model management reports `gib` GiB free (None: what it measures); chunk sizes follow from it."""
    import comfy.model_management as mm

    if gib is None:
        yield
        return
    real = mm.get_free_memory
    mm.get_free_memory = lambda dev=None, torch_free_too=False: (gib * 2 ** 30, gib * 2 ** 30) if torch_free_too \
        else gib * 2 ** 30
    try:
        yield
    finally:
        mm.get_free_memory = real


def counts(host, full):
    import comfy.model_management as mm
    from faceanon.branches import branch_plan
    from faceanon.presets import PRESETS

    anon = host.pack("nodes.anonymize")
    here = mm.get_free_memory(full.load_device) / 2 ** 30
    scenarios = {f"here ({here:.0f} GiB)": None, "80 GiB": 80.0, "unbounded": 2.0 ** 20}
    print(f"\n1. sequential UNet calls per photo at full step counts (full-width SD1.5-layout UNet, its calls replaced "
          f"by a counting stub), face by face and batched with the free memory of: this machine as measured now "
          f"({here:.1f} GiB on {full.load_device}), 80 GiB, unbounded; ComfyUI's memory estimate for this host "
          f"(no flash attention, float32)")
    head = "".join(f"{s:>27s}" for s in scenarios)
    print(f"   {'preset':8s} {'crop':>4s} {'faces':>5s} {'evals/face':>10s} {'face by face':>15s}{head}")
    print(f"   {'':8s} {'':4s} {'':5s} {'':10s} {'calls (x1 face)':>15s}"
          + "".join(f"{'chunk  calls (x1 face)':>27s}" for _ in scenarios))
    for name, short in PRESET_NAMES.items():
        preset = PRESETS[name]
        branches = len(branch_plan(preset.gate_face, False, not preset.zero_negative).branches)
        first = {}
        for n in FACES:
            cells = []
            for label, gib in [("fbf", None)] + list(scenarios.items()):
                settings = modes(preset)["face by face" if label == "fbf" else "batched"]
                with free_memory(gib):
                    calls, rows, _ = run(host, full, CountingStub(), settings, n, 768)
                    chunk = min(n, anon.faces_per_call(full, settings, branches))
                first.setdefault(label, calls)
                ratio = f"{calls:5d} (x{calls / first[label]:.2f})"
                cells.append(ratio if label == "fbf" else f"{chunk:5d} {ratio:>21s}")
            print(f"   {short:8s} {preset.resolution:4d} {n:5d} {rows / n:10.0f} {cells[0]:>15s}"
                  + "".join(f"{c:>27s}" for c in cells[1:]))


def wall(host, model, label, ctx_dim, resolution, steps, faces):
    from faceanon.presets import PRESETS

    print(f"\n2. wall time, {label}, crop {resolution} px ({resolution // 8}x{resolution // 8} latent), "
          f"{'full step counts' if steps is None else f'{steps} steps'}")
    print(f"   {'preset':9s} {'faces':>5s} {'calls fbf':>9s} {'calls batched':>13s} {'evals':>6s} {'fbf s':>8s} "
          f"{'batched s':>9s} {'batched/fbf':>11s}")
    for name, short in PRESET_NAMES.items():
        preset = dataclasses.replace(PRESETS[name], resolution=resolution)
        if steps is not None:  # a short run still gates the face from its second step, as the preset does later
            preset = dataclasses.replace(preset, steps=steps, mask_delay=min(preset.mask_delay, 1))
        m = modes(preset)
        run(host, model, RowClock(), m["batched"], 1, ctx_dim)  # warm-up
        for n in faces:
            c1, r1, t1 = run(host, model, RowClock(), m["face by face"], n, ctx_dim)
            c2, r2, t2 = run(host, model, RowClock(), m["batched"], n, ctx_dim)
            assert r1 == r2, (r1, r2)
            print(f"   {short:9s} {n:5d} {c1:9d} {c2:13d} {r1:6d} {t1:8.2f} {t2:9.2f} {t2 / t1:11.3f}")


def main():
    host, args, tmp = boot(__doc__, "bench_batch")
    from dev.tiny_models import SD15_TINY_UNET

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ComfyUI at {host.path}")
    full = patched_model(host, SD15_FULL_UNET, tmp, seed=1)
    counts(host, full)
    tiny = patched_model(host, SD15_TINY_UNET, tmp)
    wall(host, tiny, "tiny SD1.5-layout UNet (32 ch)", 64, 64, None, FACES)
    wall(host, full, "full-width SD1.5-layout UNet (320 ch, full depth)", 768, 128, 2,
         FACES[:2] if args.quick else FACES)


if __name__ == "__main__":
    main()
