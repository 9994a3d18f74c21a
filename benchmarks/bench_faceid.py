"""Cost of the FaceAnon identity patch per UNet evaluation: patched vs unpatched, side by side in one run.

Two random-weight UNets built in-process through ComfyUI (no files):
  * tiny   : SD1.5 layout, model_channels 32, context 64, 8x8 latent  -> the patch's own cost is visible;
  * full   : SD1.5 layout, model_channels 320, context 768 (860M parameters), 32x32 latent, a few calls.
Each evaluation is one ``comfy.samplers.calc_cond_batch([positive, negative])`` (both branches batched, as CFG
sampling does). The patched model carries a different identity in each branch (the worst case for the token
assembly). Calls alternate unpatched / patched so that load on a shared machine hits both alike. The FaceID LoRA is
merged into the weights once when the model is loaded (ComfyUI weight patching), so it has no per-call cost; its
one-time merge is timed separately.

Usage:  python benchmarks/bench_faceid.py [--comfyui PATH] [--calls N] [--full-calls N] [--threads N] [--gpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def boot(comfyui: Path, gpu: bool, workdir: Path):
    """ComfyUI booted in-process with the pack loaded by its own loader (dev.host); the ID adapter module."""
    from dev.host import ComfyHost

    return ComfyHost(comfyui, workdir, cpu=not gpu).pack("nodes.id_adapter")


def build(model_channels: int, context_dim: int, device, dtype, seed: int):
    from dev.tiny_models import SD15_FULL_UNET, build_model_patcher

    cfg = dict(SD15_FULL_UNET, model_channels=model_channels, context_dim=context_dim)
    return build_model_patcher(cfg, "sd15", seed=seed, device=device, dtype=dtype), cfg


def faceid_file(patcher, path: Path, seed: int):
    """A FaceID .bin for this UNet (real key names, fp16 as published, rank-128 LoRA); its cross-attention count."""
    import torch

    from dev.faceid_files import faceid_state_dict, layers_of, write_bin

    layers = layers_of(patcher)
    write_bin(faceid_state_dict(layers, rank=128, dtype=torch.float16, seed=seed), path)
    return path, len([la for la in layers if la.attn == "attn2"])


def bench(ida, label, model_channels, context_dim, latent, calls, device, dtype, tmp):
    import comfy.conds
    import comfy.samplers
    import torch

    t0 = time.perf_counter()
    base, _ = build(model_channels, context_dim, device, dtype, seed=0)
    build_s = time.perf_counter() - t0
    path, n_cross = faceid_file(base, tmp / f"bench_faceid_{label}.bin", seed=1)
    adapter = ida.load_id_adapter(str(path))
    patched = ida.apply_id_adapter(base, adapter, weight=1.0, lora_strength=1.0)
    g = torch.Generator().manual_seed(2)
    e = torch.randn(1, 512, generator=g)
    mo_patched = ida.with_branch_identities(patched.model_options, {0: e, 1: -e})

    def cond(ctx):
        return [{"model_conds": {"c_crossattn": comfy.conds.CONDCrossAttn(ctx)}, "uuid": uuid.uuid4()}]

    conds = [cond(torch.randn(1, 77, context_dim, generator=g).to(device, dtype)),
             cond(torch.randn(1, 77, context_dim, generator=g).to(device, dtype))]
    x = torch.randn(1, 4, latent, latent, generator=g).to(device, dtype)
    sigma = torch.full((1,), 3.0, device=device, dtype=dtype)

    t0 = time.perf_counter()
    patched.patch_model(device_to=device)  # merges the LoRA (one-time)
    lora_s = time.perf_counter() - t0
    patched.pre_run()

    def one(mo):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            comfy.samplers.calc_cond_batch(patched.model, conds, x, sigma, mo)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    plain_mo = base.model_options
    one(plain_mo), one(mo_patched)  # warm-up (allocations, first projection)
    plain, with_patch = [], []
    for _ in range(calls):
        plain.append(one(plain_mo))
        with_patch.append(one(mo_patched))

    # Instrumented pass: the time spent inside the patches minus the text attention they also run (which the
    # unpatched model runs too) is the patch's own cost, free of the A/B noise of a shared machine.
    acc = {"patch": 0.0, "text": 0.0}
    orig_call, orig_text = ida.FaceIDAttn2Patch.__call__, ida._text_attention

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed_text(*args):
        sync()
        t = time.perf_counter()
        r = orig_text(*args)
        sync()
        acc["text"] += time.perf_counter() - t
        return r

    def timed_call(self, *args):
        sync()
        t = time.perf_counter()
        r = orig_call(self, *args)
        sync()
        acc["patch"] += time.perf_counter() - t
        return r

    ida._text_attention, ida.FaceIDAttn2Patch.__call__ = timed_text, timed_call
    try:
        n_inst = max(1, min(calls, 3))
        for _ in range(n_inst):
            one(mo_patched)
    finally:
        ida._text_attention, ida.FaceIDAttn2Patch.__call__ = orig_text, orig_call
    patched.unpatch_model(device_to=device)
    own_ms = 1000 * (acc["patch"] - acc["text"]) / n_inst
    p_med, w_med = statistics.median(plain), statistics.median(with_patch)
    return {"label": label, "cross_layers": n_cross, "latent": latent, "calls": calls, "build_s": build_s,
            "lora_merge_s": lora_s, "plain_ms": 1000 * p_med, "patched_ms": 1000 * w_med,
            "overhead_ms": 1000 * (w_med - p_med), "overhead_pct": 100 * (w_med / p_med - 1),
            "plain_min_ms": 1000 * min(plain), "patched_min_ms": 1000 * min(with_patch),
            "own_ms": own_ms, "own_pct": 100 * own_ms / (1000 * p_med)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH", str(Path.home() / "ComfyUI")))
    ap.add_argument("--calls", type=int, default=30, help="timed calls per variant on the tiny UNet")
    ap.add_argument("--full-calls", type=int, default=5, help="timed calls per variant on the full-width UNet")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave torch's default)")
    ap.add_argument("--gpu", action="store_true", help="run on CUDA in fp16 when available")
    ap.add_argument("--skip-full", action="store_true")
    a = ap.parse_args()

    import logging
    import tempfile

    logging.disable(logging.INFO)
    tmp = Path(tempfile.mkdtemp(prefix="bench_faceid_"))
    ida = boot(Path(a.comfyui), a.gpu, tmp)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    use_gpu = a.gpu and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    dtype = torch.float16 if use_gpu else torch.float32
    print(f"device {device} ({torch.cuda.get_device_name() if use_gpu else f'{torch.get_num_threads()} threads'}), "
          f"dtype {dtype}, torch {torch.__version__}")
    rows = [bench(ida, "tiny", 32, 64, 8, a.calls, device, dtype, tmp)]
    if not a.skip_full:
        rows.append(bench(ida, "full", 320, 768, 32, a.full_calls, device, dtype, tmp))
    print(f"{'UNet':6} {'attn2':>5} {'latent':>6} {'calls':>5} {'unpatched ms':>13} {'patched ms':>11} "
          f"{'A/B diff':>9} {'A/B %':>7} {'patch own ms':>12} {'own %':>6} {'LoRA merge s':>12}")
    for r in rows:
        print(f"{r['label']:6} {r['cross_layers']:>5} {r['latent']:>4}^2 {r['calls']:>5} {r['plain_ms']:>13.2f} "
              f"{r['patched_ms']:>11.2f} {r['overhead_ms']:>9.2f} {r['overhead_pct']:>6.1f}% {r['own_ms']:>12.2f} "
              f"{r['own_pct']:>5.1f}% {r['lora_merge_s']:>12.2f}")
    tiny = rows[0]
    print(f"tiny: the patch costs {tiny['own_ms']:.2f} ms per UNet call, "
          f"{tiny['own_ms'] / tiny['cross_layers'] * 1000:.0f} us per cross-attention layer (instrumented); A/B "
          f"medians {tiny['plain_ms']:.2f} -> {tiny['patched_ms']:.2f} ms, minima {tiny['plain_min_ms']:.2f} -> "
          f"{tiny['patched_min_ms']:.2f} ms")
    if len(rows) > 1:
        full = rows[1]
        worst = max(full["own_pct"], full["overhead_pct"])
        verdict = "meets" if worst < 10 else "MISSES"
        print(f"full width: the patch's own cost is {full['own_ms']:.1f} ms = {full['own_pct']:.2f}% of an "
              f"evaluation; A/B medians {full['plain_ms']:.0f} -> {full['patched_ms']:.0f} ms "
              f"({full['overhead_pct']:+.1f}%), minima {full['plain_min_ms']:.0f} -> {full['patched_min_ms']:.0f} ms "
              f"({verdict} the < 10% target)")


if __name__ == "__main__":
    main()
