"""Model evaluations per face for each preset, and the identity guider's host overhead against core CFG sampling.

Side by side in one run:
  1. NFE per face (UNet evaluations = batch rows through the UNet) of each preset's inversion + sampling, against the
     reference pipelines' counts (NullFace 100 + 30x2 = 160; Reverse Personalization 100x2 + 100x2 = 400), and the
     cost of a second attribute variant of an already inverted face (sampling only);
  2. a tiny random UNet: non-model time per sampling step, FaceAnon guider + replay vs core CFGGuider + core sampler
     of the same family, on the same FaceID-patched model;
  3. a random-weight full-width SD1.5-layout UNet at 32x32 latent: time per model evaluation, ours vs core.

    python benchmarks/bench_guidance.py [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_inversion import SD15_FULL_UNET, ModelClock, boot  # noqa: E402

REFERENCE = {"NullFace (SD1.5)": 160, "Reverse Personalization (SDXL)": 400}
CORE_SAMPLER = {"ddpm": "euler_ancestral", "dpmpp_2m_sde": "dpmpp_2m_sde"}


class RowClock(ModelClock):
    """ModelClock that also counts batch rows (one row = one model evaluation of one branch)."""

    def __init__(self):
        super().__init__()
        self.rows = 0
        inner = self.wrapper

        def wrapper(apply_model, args):
            self.rows += args["input"].shape[0]
            return inner(apply_model, args)

        self.wrapper = wrapper


def patched_model(host, unet_config, tmp, seed=0):
    from dev.faceid_files import faceid_state_dict, layers_of, write_bin
    from dev.tiny_models import build_model_patcher

    ida = host.pack("nodes.id_adapter")
    base = build_model_patcher(unet_config, "sd15", seed=seed)
    layers = layers_of(base)
    path = write_bin(faceid_state_dict(layers, rank=128, dtype=torch.float16, seed=1), tmp / f"faceid{seed}.bin")
    return ida.apply_id_adapter(base, ida.load_id_adapter(path))


def nfe_per_face(host, model, ctx_dim, preset_name):
    from faceanon.presets import PRESETS

    inv, gd = host.pack("nodes.inversion"), host.pack("nodes.guidance")
    s = PRESETS[preset_name]
    clock = RowClock()
    m = model.clone()
    m.set_model_unet_function_wrapper(clock.wrapper)
    empty = [[torch.randn(1, 77, ctx_dim, generator=torch.Generator().manual_seed(0)), {}]]
    negative = gd.zero_out(empty) if s.zero_negative else empty
    attr = [[torch.randn(1, 77, ctx_dim, generator=torch.Generator().manual_seed(1)), {}]]
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    e = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    inverted = inv.invert_latent(m, empty, negative, {"samples": lat}, s.solver, s.steps, s.skip, s.eta,
                                 s.inversion_cfg, 0)
    inversion_rows = clock.rows
    mask = torch.ones(1, 64, 64) if s.gate_face else None

    def sample(attribute):
        guider = gd.identity_guider(m, empty, negative, e, s.identity_scale, s.cfg, attribute, mask, s.mask_delay)
        noise = inv.InversionNoise(inverted).generate_noise({"samples": lat})
        guider.sample(noise, lat, inv.replay_sampler(inverted, False), inverted.core.sigmas, disable_pbar=True)

    sample(None)
    first = clock.rows
    sample(attr)
    return inversion_rows, first - inversion_rows, clock.rows - first


def overhead(host, model, ctx_dim, lat_hw, solver, steps, reps):
    import comfy.sample
    import comfy.samplers

    inv, gd = host.pack("nodes.inversion"), host.pack("nodes.guidance")
    clock = RowClock()
    m = model.clone()
    m.set_model_unet_function_wrapper(clock.wrapper)
    cond = [[torch.randn(1, 77, ctx_dim, generator=torch.Generator().manual_seed(0)), {}]]
    neg = [[torch.randn(1, 77, ctx_dim, generator=torch.Generator().manual_seed(3)), {}]]
    lat = torch.randn(1, 4, lat_hw, lat_hw, generator=torch.Generator().manual_seed(1))
    e = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    inverted = inv.invert_latent(m, cond, neg, {"samples": lat}, solver, steps, 0.7, 1.0, 1.0, 0)
    sigmas = inverted.core.sigmas
    res = {"ours": [0.0, 0.0, 0], "core": [0.0, 0.0, 0]}  # total s, model s, calls
    for _ in range(reps):
        for who in ("ours", "core"):
            clock.calls, clock.seconds = 0, 0.0
            t = time.perf_counter()
            if who == "ours":
                guider = gd.identity_guider(m, cond, neg, e, 1.0, -10.0)
                noise = inv.InversionNoise(inverted).generate_noise({"samples": lat})
                guider.sample(noise, lat, inv.replay_sampler(inverted, False), sigmas, disable_pbar=True)
            else:
                noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(2))
                comfy.sample.sample_custom(m, noise, 7.0, comfy.samplers.sampler_object(CORE_SAMPLER[solver]),
                                           sigmas, cond, neg, lat, disable_pbar=True, seed=2)
            r = res[who]
            r[0] += time.perf_counter() - t
            r[1] += clock.seconds
            r[2] += clock.calls
    n = steps * reps
    o, c = res["ours"], res["core"]
    return ((o[0] - o[1]) / n, (c[0] - c[1]) / n, o[1] / o[2], c[1] / c[2], o[2] // reps, c[2] // reps)


def main():
    host, args, tmp = boot(__doc__, "bench_guidance")
    from dev.tiny_models import SD15_TINY_UNET

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ComfyUI at {host.path}")
    tiny = patched_model(host, SD15_TINY_UNET, tmp)
    print("\n1. model evaluations per face (tiny model; the counts do not depend on the model)")
    print(f"   {'preset':32s} {'inversion':>9s} {'sampling':>9s} {'total':>6s} {'reference':>9s} {'2nd variant':>11s}")
    for name, ref in REFERENCE.items():
        inv_n, samp_n, variant_n = nfe_per_face(host, tiny, 64, name)
        print(f"   {name:32s} {inv_n:9d} {samp_n:9d} {inv_n + samp_n:6d} {ref:9d} {variant_n:11d}")
    print("\n2. tiny SD1.5-layout UNet (32 ch) + FaceID patch, 8x8 latent, 30 steps x 5 runs, two branches batched")
    for solver in ("ddpm", "dpmpp_2m_sde"):
        overhead(host, tiny, 64, 8, solver, 5, 1)  # warm-up
        o_over, c_over, o_eval, c_eval, o_calls, c_calls = overhead(host, tiny, 64, 8, solver, 30, 5)
        print(f"   {solver:13s} vs core {CORE_SAMPLER[solver]:15s}: non-model time per step ours {o_over * 1e3:.2f} ms,"
              f" core {c_over * 1e3:.2f} ms, ratio {o_over / c_over:.2f} (UNet calls per run {o_calls} vs {c_calls})")
    steps = 2 if args.quick else 3
    full = patched_model(host, SD15_FULL_UNET, tmp, seed=1)
    overhead(host, full, 768, 32, "ddpm", 1, 1)  # warm-up
    print(f"\n3. full-width SD1.5-layout UNet (320 ch, full depth) + FaceID patch, 32x32 latent, {steps} steps")
    for solver in ("ddpm",):
        o_over, c_over, o_eval, c_eval, *_ = overhead(host, full, 768, 32, solver, steps, 1)
        print(f"   {solver}: time per UNet call (2 branches batched) ours {o_eval:.2f} s, core {c_eval:.2f} s, "
              f"ratio {o_eval / c_eval:.3f}")


if __name__ == "__main__":
    main()
