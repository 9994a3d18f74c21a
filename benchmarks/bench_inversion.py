"""Inversion + replay against core ComfyUI custom sampling, side by side in one run.

For each solver, with the same model, schedule and sampler family (ddpm ~ core euler_ancestral, dpmpp_2m_sde ~ core
dpmpp_2m_sde), it counts UNet evaluations (NFE) and times:
  (a) a tiny random UNet, where host overhead dominates: non-model time per step, ours / core;
  (b) a random-weight full-width SD1.5-layout UNet (320 channels, full depth) at 32x32 latent for a few steps:
      time per model evaluation, ours / core.
Model time is measured inside ComfyUI's `model_function_wrapper` around `apply_model`, identical for both.

    python benchmarks/bench_inversion.py            # needs a ComfyUI (COMFYUI_PATH or ~/ComfyUI) and torch
    python benchmarks/bench_inversion.py --quick    # (b) with 2 steps instead of 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dev.host import ComfyHost, find_host  # noqa: E402

SD15_FULL_UNET = {
    "in_channels": 4, "out_channels": 4, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], "transformer_depth_middle": 1,
    "context_dim": 768, "num_heads": 8, "num_head_channels": -1, "use_linear_in_transformer": False,
    "adm_in_channels": None, "use_temporal_attention": False, "use_spatial_transformer": True, "legacy": False,
    "image_size": 32, "use_checkpoint": False, "dims": 2, "use_temporal_resblock": False,
}
CORE_SAMPLER = {"ddpm": "euler_ancestral", "dpmpp_2m_sde": "dpmpp_2m_sde"}


class ModelClock:
    """Counts and times UNet evaluations through ComfyUI's model_function_wrapper.

    The wrapper is a plain function (ModelPatcher.clone deep-copies model_options, and deepcopy keeps functions,
    not instances), so clones made inside the nodes report to the same clock.
    """

    def __init__(self):
        self.calls, self.seconds = 0, 0.0

        def wrapper(apply_model, args):
            t = time.perf_counter()
            out = apply_model(args["input"], args["timestep"], **args["c"])
            self.seconds += time.perf_counter() - t
            self.calls += 1
            return out

        self.wrapper = wrapper


def run_ours(inv_nodes, model, cond, lat, solver, steps):
    import comfy.samplers

    inverted = inv_nodes.invert_latent(model, cond, cond, {"samples": lat}, solver, steps, 0.7, 1.0, 1.0, 0)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(cond, cond)
    guider.set_cfg(1.0)
    noise = inv_nodes.InversionNoise(inverted).generate_noise({"samples": lat})
    guider.sample(noise, lat, inv_nodes.replay_sampler(inverted, False), inverted.core.sigmas, disable_pbar=True)
    return inverted.core.sigmas


def run_core(model, cond, lat, solver, sigmas):
    import comfy.sample
    import comfy.samplers

    sampler = comfy.samplers.sampler_object(CORE_SAMPLER[solver])
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(2))
    comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, lat, disable_pbar=True, seed=2)


def bench(model, context_dim, latent_hw, solver, steps, reps):
    """Alternate ours (inversion + replay) and core sampling `reps` times; sums per side:
    [model calls, model seconds, total seconds, sampling steps]."""
    inv_nodes = sys.modules[str(ROOT).replace(".", "_x_") + ".nodes.inversion"]
    cond = [[torch.randn(1, 77, context_dim, generator=torch.Generator().manual_seed(0)), {}]]
    lat = torch.randn(1, 4, latent_hw, latent_hw, generator=torch.Generator().manual_seed(1))
    clock = ModelClock()
    m = model.clone()
    m.set_model_unet_function_wrapper(clock.wrapper)
    rows = {"ours": [0, 0.0, 0.0, 0], "core": [0, 0.0, 0.0, 0]}
    sigmas = None
    for _ in range(reps):
        for who in ("ours", "core"):
            clock.calls, clock.seconds = 0, 0.0
            t = time.perf_counter()
            if who == "ours":
                sigmas = run_ours(inv_nodes, m, cond, lat, solver, steps)
            else:
                run_core(m, cond, lat, solver, sigmas)
            r = rows[who]
            r[0] += clock.calls
            r[1] += clock.seconds
            r[2] += time.perf_counter() - t
            r[3] += 2 * steps if who == "ours" else steps
    return rows


def report(title, rows, steps, reps):
    o, c = rows["ours"], rows["core"]
    print(f"\n{title}")
    print(f"  NFE per run: ours {o[0] // reps} (= {steps} inversion + {steps} replay), core {c[0] // reps} "
          f"(= {steps} sampling)")
    o_over, c_over = (o[2] - o[1]) / o[3], (c[2] - c[1]) / c[3]
    o_eval, c_eval = o[1] / o[0], c[1] / c[0]
    print(f"  non-model time per step: ours {o_over * 1e3:.2f} ms, core {c_over * 1e3:.2f} ms, "
          f"ratio {o_over / c_over:.2f}")
    print(f"  time per model evaluation: ours {o_eval * 1e3:.1f} ms, core {c_eval * 1e3:.1f} ms, "
          f"ratio {o_eval / c_eval:.3f}")


def boot(doc: str, name: str):
    """Parse --quick, boot an in-process ComfyUI with the pack; return (host, args, temp dir)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer full-width steps")
    args = ap.parse_args()
    path, why = find_host()
    if path is None:
        sys.exit(f"{name}: {why}")
    tmp = Path(tempfile.mkdtemp(prefix="faceanon-bench-"))
    host = ComfyHost(path, tmp)
    torch.set_grad_enabled(False)
    return host, args, tmp


def main():
    host, args, _ = boot(__doc__, "bench_inversion")
    from dev.tiny_models import SD15_TINY_UNET, build_model_patcher

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ComfyUI at {host.path}")
    tiny = build_model_patcher(SD15_TINY_UNET, "sd15")
    for solver in ("ddpm", "dpmpp_2m_sde"):
        bench(tiny, 64, 8, solver, 5, 1)  # warm-up
        rows = bench(tiny, 64, 8, solver, 30, 5)
        report(f"(a) tiny SD1.5-layout UNet (32 ch), 8x8 latent, 30 steps x 5 runs, solver {solver} "
               f"vs core {CORE_SAMPLER[solver]}", rows, 30, 5)
    full = build_model_patcher(SD15_FULL_UNET, "sd15")
    steps = 2 if args.quick else 3
    bench(full, 768, 32, "ddpm", 1, 1)  # warm-up: first-call allocations must not count for either side
    for solver in ("ddpm", "dpmpp_2m_sde"):
        rows = bench(full, 768, 32, solver, steps, 1)
        report(f"(b) full-width SD1.5-layout UNet (320 ch, full depth), 32x32 latent, {steps} steps, solver {solver} "
               f"vs core {CORE_SAMPLER[solver]}", rows, steps, 1)


if __name__ == "__main__":
    main()
