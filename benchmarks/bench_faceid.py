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
import importlib
import importlib.util
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def boot(comfyui: Path, gpu: bool):
    sys.path.insert(0, str(comfyui))
    from comfy.cli_args import args

    args.cpu = not gpu
    import comfy.model_management  # noqa: F401  (device chosen here)

    # Import the pack as a package under an alias (its folder name need not be a valid module name).
    spec = importlib.util.spec_from_file_location("faceanon_pack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["faceanon_pack"] = pack
    spec.loader.exec_module(pack)
    return importlib.import_module("faceanon_pack.nodes.id_adapter")


SD15_BASE = {"in_channels": 4, "out_channels": 4, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1] * 9 + [0, 0, 0],
             "transformer_depth_middle": 1, "use_linear_in_transformer": False, "adm_in_channels": None,
             "use_temporal_attention": False, "use_spatial_transformer": True, "legacy": False, "image_size": 32,
             "use_checkpoint": False, "dims": 2, "use_temporal_resblock": False}


def build(model_channels: int, context_dim: int, device, dtype, seed: int):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    cfg = dict(SD15_BASE, model_channels=model_channels, context_dim=context_dim)
    config = comfy.supported_models.SD15(cfg)
    model = comfy.model_base.BaseModel(config, device=device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * min(0.02, fan_in ** -0.5))
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device), cfg


def faceid_file(patcher, path: Path, seed: int):
    import torch

    from faceanon_pack.faceanon import faceid

    layers = faceid.layout_from_shapes({k: v.shape for k, v in patcher.model_state_dict().items()})
    g = torch.Generator().manual_seed(seed)
    c = layers[1].context_dim
    ip = {}
    for la in layers:
        ins = {"to_q": la.width, "to_k": la.context_dim, "to_v": la.context_dim, "to_out": la.width}
        for p in faceid.LORA_PROJECTIONS:
            ip[f"{la.processor}.{p}_lora.down.weight"] = torch.randn(128, ins[p], generator=g).half() * 0.01
            ip[f"{la.processor}.{p}_lora.up.weight"] = torch.randn(la.width, 128, generator=g).half() * 0.01
        if la.attn == "attn2":
            ip[f"{la.processor}.to_k_ip.weight"] = torch.randn(la.width, c, generator=g).half() * 0.05
            ip[f"{la.processor}.to_v_ip.weight"] = torch.randn(la.width, c, generator=g).half() * 0.05
    image_proj = {"proj.0.weight": torch.randn(1024, 512, generator=g).half() * 0.04,
                  "proj.0.bias": torch.zeros(1024).half(),
                  "proj.2.weight": torch.randn(4 * c, 1024, generator=g).half() * 0.03,
                  "proj.2.bias": torch.zeros(4 * c).half(), "norm.weight": torch.ones(c).half(),
                  "norm.bias": torch.zeros(c).half()}
    torch.save({"image_proj": image_proj, "ip_adapter": ip}, path)
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
    ida = boot(Path(a.comfyui), a.gpu)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    use_gpu = a.gpu and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    dtype = torch.float16 if use_gpu else torch.float32
    tmp = Path(tempfile.mkdtemp(prefix="bench_faceid_"))
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
