"""Writers of IP-Adapter FaceID files for tests: the real key names and shapes (model_files.md), random values.

The layout comes from `layout_from_unet_config` (here) / `faceanon.faceid.layout_from_shapes`, so the same writer makes
a full-size SD1.5 (32 processors, 294 keys) or SDXL (140 processors, 1266 keys) file, or a tiny one that matches a
tiny UNet built in-process. ``device="meta"`` gives shape-only tensors (a full-size SDXL file is 1 GB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from faceanon.faceid import ID_DIM, LORA_PROJECTIONS, PROJ_HIDDEN, AttentionLayer, layout_from_shapes

def layout_from_unet_config(cfg: Mapping) -> list[AttentionLayer]:
    """The same layout from a ComfyUI unet_config (model_channels, channel_mult, num_res_blocks, transformer_depth,
    transformer_depth_middle, transformer_depth_output, context_dim), without building the model."""
    mc, mult = int(cfg["model_channels"]), list(cfg["channel_mult"])
    nrb = cfg["num_res_blocks"]
    nrb = [nrb] * len(mult) if isinstance(nrb, int) else list(nrb)
    td, tdo = list(cfg["transformer_depth"]), list(cfg["transformer_depth_output"])
    ctx = int(cfg["context_dim"])
    shapes: dict[str, tuple[int, int]] = {}

    def add(prefix, depth, ch):
        for t in range(depth):
            base = f"diffusion_model.{prefix}.transformer_blocks.{t}"
            shapes[f"{base}.attn1.to_q.weight"] = (ch, ch)
            shapes[f"{base}.attn1.to_k.weight"] = (ch, ch)
            shapes[f"{base}.attn2.to_q.weight"] = (ch, ch)
            shapes[f"{base}.attn2.to_k.weight"] = (ch, ctx)

    n = 1
    for level, m in enumerate(mult):
        for _ in range(nrb[level]):
            add(f"input_blocks.{n}.1", td.pop(0), mc * m)
            n += 1
        if level != len(mult) - 1:
            n += 1
    mid = cfg.get("transformer_depth_middle")
    if mid is not None and mid > 0:
        add("middle_block.1", int(mid), mc * mult[-1])
    n = 0
    for level, m in list(enumerate(mult))[::-1]:
        for _ in range(nrb[level] + 1):
            add(f"output_blocks.{n}.1", tdo.pop(), mc * m)
            n += 1
    return layout_from_shapes(shapes)


SD15_UNET = {"model_channels": 320, "channel_mult": [1, 2, 4, 4], "num_res_blocks": [2, 2, 2, 2],
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_middle": 1,
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "context_dim": 768}
SDXL_UNET = {"model_channels": 320, "channel_mult": [1, 2, 4], "num_res_blocks": [2, 2, 2],
             "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_middle": 10,
             "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "context_dim": 2048}




def layers_of(patcher) -> list[AttentionLayer]:
    """The attention layers of a ComfyUI ModelPatcher's UNet, numbered like the FaceID files."""
    return layout_from_shapes({k: v.shape for k, v in patcher.model_state_dict().items()})


_POOL = 1 << 20


class _Random:
    """N(0, scale^2) values from a seeded generator. Tensors larger than 4096 values are views into one shared random
    pool (per dtype and scale) at random offsets: full-size files hold 48M (SD1.5) / 535M (SDXL) values, and
    drawing or even copying every one takes seconds on a shared CPU."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)
        self.base = None
        self.pools = {}

    def __call__(self, shape, dtype, device, scale):
        if device == "meta":
            return torch.empty(shape, dtype=dtype, device="meta")
        n = 1
        for s in shape:
            n *= s
        if n <= 4096:
            return (torch.randn(shape, generator=self.gen) * scale).to(dtype)
        if self.base is None:
            self.base = torch.randn(_POOL, generator=self.gen)
        pool = self.pools.get((dtype, scale))
        if pool is None:
            pool = self.pools[(dtype, scale)] = (self.base * scale).to(dtype)
        start = int(torch.randint(0, _POOL, (1,), generator=self.gen))
        if start + n > _POOL:
            start = 0
        if n > _POOL:
            return pool.repeat((n + _POOL - 1) // _POOL)[:n].reshape(shape)
        return pool[start:start + n].view(shape)


def faceid_state_dict(layers: Sequence[AttentionLayer], num_tokens: int = 4, rank: int | None = 128,
                      dtype=torch.float16, seed: int = 0, device: str = "cpu", kv_scale: float = 0.05,
                      lora_scale: float = 0.05) -> dict:
    """{"image_proj": {...}, "ip_adapter": {...}} for a UNet with these attention layers (the .bin layout).
    `rank=None` leaves out the LoRA (as in FaceID Portrait files)."""
    rnd = _Random(seed)
    cross = {la.context_dim for la in layers if la.attn == "attn2"}
    assert len(cross) == 1, cross
    c = cross.pop()
    image_proj = {
        "proj.0.weight": rnd((PROJ_HIDDEN, ID_DIM), dtype, device, ID_DIM ** -0.5),
        "proj.0.bias": rnd((PROJ_HIDDEN,), dtype, device, 0.1),
        "proj.2.weight": rnd((num_tokens * c, PROJ_HIDDEN), dtype, device, PROJ_HIDDEN ** -0.5),
        "proj.2.bias": rnd((num_tokens * c,), dtype, device, 0.1),
        "norm.weight": (1.0 + rnd((c,), torch.float32, device, 0.1)).to(dtype),
        "norm.bias": rnd((c,), dtype, device, 0.1),
    }
    ip = {}
    for la in layers:
        i, h = la.processor, la.width
        if rank:
            ins = {"to_q": h, "to_k": la.context_dim, "to_v": la.context_dim, "to_out": h}
            for p in LORA_PROJECTIONS:
                ip[f"{i}.{p}_lora.down.weight"] = rnd((rank, ins[p]), dtype, device, lora_scale)
                ip[f"{i}.{p}_lora.up.weight"] = rnd((h, rank), dtype, device, lora_scale)
        if la.attn == "attn2":
            ip[f"{i}.to_k_ip.weight"] = rnd((h, c), dtype, device, kv_scale)
            ip[f"{i}.to_v_ip.weight"] = rnd((h, c), dtype, device, kv_scale)
    return {"image_proj": image_proj, "ip_adapter": ip}


def flat(sd: dict) -> dict:
    """The flat, prefixed layout of the .safetensors variants."""
    out = {f"image_proj.{k}": v for k, v in sd["image_proj"].items()}
    out.update({f"ip_adapter.{k}": v for k, v in sd["ip_adapter"].items()})
    return out


def write_bin(sd: dict, path) -> str:
    torch.save(sd, str(path))
    return str(path)


def write_safetensors(sd: dict, path) -> str:
    from safetensors.torch import save_file

    tensors = sd if "image_proj" not in sd else flat(sd)
    save_file({k: v.clone() for k, v in tensors.items()}, str(path))  # clone: the writer's tensors share a pool
    return str(path)


def kohya_lora_state_dict(sd: dict, diffusers_prefixes: dict[int, str], alpha: bool = True) -> dict:
    """The embedded LoRA re-keyed like the published ip-adapter-faceid_*_lora.safetensors:
    ``lora_unet_<diffusers module path with _>.lora_{up,down}.weight`` (+ ``.alpha`` = rank, i.e. scale 1).
    `diffusers_prefixes` maps processor index -> diffusers attention module path
    (e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1")."""
    ip = sd["ip_adapter"]
    out = {}
    for i, path in diffusers_prefixes.items():
        for p in LORA_PROJECTIONS:
            sub = "to_out_0" if p == "to_out" else p
            base = "lora_unet_" + path.replace(".", "_") + "_" + sub
            down = ip[f"{i}.{p}_lora.down.weight"]
            out[f"{base}.lora_down.weight"] = down
            out[f"{base}.lora_up.weight"] = ip[f"{i}.{p}_lora.up.weight"]
            if alpha:
                out[f"{base}.alpha"] = torch.tensor(float(down.shape[0]))
    return out


def diffusers_attention_paths(unet_config: dict, layers: Sequence[AttentionLayer]) -> dict[int, str]:
    """processor index -> diffusers attention module path, through ComfyUI's own unet_to_diffusers map."""
    import comfy.utils

    inverse = {}
    for dk, ck in comfy.utils.unet_to_diffusers(unet_config).items():
        if dk.endswith(".to_q.weight"):
            inverse[ck[: -len(".to_q.weight")]] = dk[: -len(".to_q.weight")]
    return {la.processor: inverse[la.prefix] for la in layers}
