"""IP-Adapter FaceID, host-independent: files, projection, decoupled attention, and the UNet layer map.

What lives here (no ComfyUI import; the ComfyUI side is nodes/id_adapter.py):

* reading a FaceID file safely (safetensors, or ``torch.load(weights_only=True)``) and inspecting it: variant,
  base-model family, token count, cross-attention dim, processor count, LoRA rank, with errors that name the file;
* the FaceID projection (Linear 512->1024, GELU, Linear 1024->T*C, LayerNorm C) and the module that holds it with
  the per-layer ``to_k_ip`` / ``to_v_ip`` weights;
* the decoupled cross-attention term ``softmax(q k_ip^T / sqrt(d)) v_ip`` as a pure function;
* the branch contract's token assembly: per cond index (ComfyUI's ``cond_or_uncond``) and per batch element, with
  the null identity (the projection of the ZERO embedding, learned non-zero tokens) wherever no identity is given;
* the map from the file's attention-processor indices to the UNet's attention layers. The files number their
  processors in diffusers' ``attn_processors`` order: down blocks, then up blocks, then the mid block LAST (ComfyUI:
  input_blocks, output_blocks, middle_block); within each transformer block attn1 (self) gets the even index and
  attn2 (cross) the next odd one. ComfyUI's attn2 replace-patch keys are ``("input", id, t)``, ``("middle", 0, t)``
  and ``("output", id, t)`` (the UNet sets the middle block to ``("middle", 0)``).

File layout (docs/id_adapter.md, research model_files.md): ``.bin`` = ``{"image_proj": {...}, "ip_adapter": {...}}``;
``.safetensors`` = one flat dict with ``image_proj.`` / ``ip_adapter.`` prefixes. ``image_proj``: ``proj.0.weight
[1024, 512]``, ``proj.0.bias``, ``proj.2.weight [T*C, 1024]``, ``proj.2.bias``, ``norm.weight [C]``, ``norm.bias``.
``ip_adapter``: per processor ``i`` the rank-r LoRA ``{i}.to_{q,k,v,out}_lora.{down,up}.weight`` (``down [r, in]``,
``up [out, r]``) and, for odd ``i`` only, ``{i}.to_k_ip.weight`` / ``{i}.to_v_ip.weight`` ``[H, C]``.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

ID_DIM = 512  # ArcFace embedding size
PROJ_HIDDEN = 1024  # FaceID MLP hidden size (mult=2 of 512)
LORA_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")

# (cross-attention dim, number of attention layers) -> family name, for messages and detection.
KNOWN_LAYOUTS = {(768, 32): "SD1.5", (2048, 140): "SDXL", (1024, 32): "SD2.x"}
CROSS_DIM_FAMILY = {768: "SD1.5", 2048: "SDXL"}
FACEID_FILE_FOR = {"SD1.5": "ip-adapter-faceid_sd15.bin", "SDXL": "ip-adapter-faceid_sdxl.bin"}

_IMAGE_PROJ_KEYS = ("proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias", "norm.weight", "norm.bias")
_PROC_KEY = re.compile(r"^(\d+)\.(to_k_ip\.weight|to_v_ip\.weight|(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight)$")


class FaceIDFileError(ValueError):
    """A file that is not a usable IP-Adapter FaceID file; the message says which file, what and how to fix."""


class FaceIDMismatchError(ValueError):
    """A FaceID file that does not fit the model it is applied to."""


# ---------------------------------------------------------------------------------------------------------------
# Reading and inspecting files
# ---------------------------------------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike) -> dict:
    """Load a .safetensors file or a torch.save file with ``weights_only=True``, on the CPU; clear errors."""
    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise FaceIDFileError(f"{path}: no such file")
    if path.lower().endswith(".safetensors"):
        try:
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        except Exception as e:  # noqa: BLE001 - safetensors raises several types; all mean "unreadable"
            raise FaceIDFileError(
                f"{name}: cannot read it as a .safetensors file ({type(e).__name__}: {e}). The file is damaged or "
                f"incomplete; download it again (IP-Adapter FaceID files: huggingface.co/h94/IP-Adapter-FaceID)."
            ) from e
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors of many kinds; all mean "unreadable or unsafe"
        raise FaceIDFileError(
            f"{name}: cannot read it as a PyTorch weights file with torch.load(weights_only=True) "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). The file is damaged, incomplete, or "
            f"holds more than tensors (refused for safety); download it again "
            f"(huggingface.co/h94/IP-Adapter-FaceID)."
        ) from e
    if not isinstance(data, Mapping):
        raise FaceIDFileError(f"{name}: expected a dict of tensors, found a {type(data).__name__}")
    return dict(data)


def split_faceid_state_dict(sd: Mapping, source: str = "the file") -> tuple[dict, dict]:
    """(image_proj, ip_adapter) from the nested .bin layout or the flat, prefixed .safetensors layout."""
    if "image_proj" in sd and "ip_adapter" in sd and isinstance(sd["image_proj"], Mapping):
        extra = sorted(set(sd) - {"image_proj", "ip_adapter"})
        if extra:
            raise FaceIDFileError(f"{source}: unexpected top-level entries {extra[:5]} next to image_proj/ip_adapter")
        return dict(sd["image_proj"]), dict(sd["ip_adapter"])
    image_proj, ip_adapter, other = {}, {}, []
    for k, v in sd.items():
        if not isinstance(k, str):
            other.append(k)
        elif k.startswith("image_proj."):
            image_proj[k[len("image_proj."):]] = v
        elif k.startswith("ip_adapter."):
            ip_adapter[k[len("ip_adapter."):]] = v
        elif k.startswith("adapter_modules."):  # training checkpoints' name for the same dict
            ip_adapter[k[len("adapter_modules."):]] = v
        else:
            other.append(k)
    if not image_proj or not ip_adapter:
        looks_lora = any(isinstance(k, str) and ("lora_" in k or "_lora." in k) for k in sd)
        hint = (" It looks like a LoRA file: choose it as the `lora` of FaceAnonLoadIDAdapter, and the FaceID "
                "adapter file (ip-adapter-faceid_*.bin) as the adapter.") if looks_lora else ""
        raise FaceIDFileError(
            f"{source}: not an IP-Adapter file: expected the entries 'image_proj' and 'ip_adapter' (a .bin) or keys "
            f"prefixed 'image_proj.' and 'ip_adapter.' (a .safetensors); found {len(sd)} keys such as "
            f"{[str(k) for k in list(sd)[:4]]}.{hint}")
    if other:
        raise FaceIDFileError(f"{source}: unexpected keys {[str(k) for k in other[:5]]} "
                              f"({len(other)} in all) next to image_proj./ip_adapter.")
    return image_proj, ip_adapter


@dataclass(frozen=True)
class FaceIDInfo:
    """What a FaceID file is. `family` is "SD1.5", "SDXL" or a description of an unknown layout."""

    variant: str
    family: str
    num_tokens: int
    cross_dim: int
    num_processors: int
    lora_rank: int | None
    num_keys: int
    num_params: int
    dtype: torch.dtype

    @property
    def num_cross_layers(self) -> int:
        return self.num_processors // 2

    def describe(self) -> str:
        lora = f"rank-{self.lora_rank} LoRA" if self.lora_rank else "no LoRA"
        return (f"IP-Adapter {self.variant} for {self.family} (cross-attention dim {self.cross_dim}, "
                f"{self.num_processors} attention layers, {self.num_tokens} tokens, {lora})")


def layout_family(cross_dim: int, num_layers: int) -> str:
    """A family name for a (cross-attention dim, attention-layer count) pair."""
    return KNOWN_LAYOUTS.get((cross_dim, num_layers),
                             f"a UNet with cross-attention dim {cross_dim} and {num_layers} attention layers")


def _shape(t) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def inspect_faceid(image_proj: Mapping, ip_adapter: Mapping, source: str = "the file") -> FaceIDInfo:
    """Check a FaceID state dict completely (every key, every shape) and describe it."""
    keys = set(image_proj)
    if "perceiver_resampler.proj_in.weight" in keys or "latents" in keys:
        raise FaceIDFileError(
            f"{source}: this is an IP-Adapter FaceID Plus / Plus v2 file (it has a perceiver resampler and needs a "
            f"CLIP vision model). FaceAnon supports plain FaceID: use ip-adapter-faceid_sd15.bin (SD1.5) or "
            f"ip-adapter-faceid_sdxl.bin (SDXL) from huggingface.co/h94/IP-Adapter-FaceID.")
    if "proj.weight" in keys or "proj.3.weight" in keys:
        raise FaceIDFileError(
            f"{source}: this is an IP-Adapter for CLIP image embeddings, not an IP-Adapter FaceID file (FaceID "
            f"files project a 512-d ArcFace embedding: image_proj.proj.0.weight [1024, 512]). Use "
            f"ip-adapter-faceid_sd15.bin or ip-adapter-faceid_sdxl.bin.")
    missing = [k for k in _IMAGE_PROJ_KEYS if k not in keys]
    if missing:
        raise FaceIDFileError(f"{source}: image_proj lacks {missing}; an IP-Adapter FaceID projection has "
                              f"{list(_IMAGE_PROJ_KEYS)}. The file is not a FaceID file or is damaged.")
    extra = sorted(keys - set(_IMAGE_PROJ_KEYS))
    if extra:
        raise FaceIDFileError(f"{source}: image_proj has unexpected keys {extra[:5]}; a plain FaceID projection has "
                              f"exactly {list(_IMAGE_PROJ_KEYS)}.")
    cross_dim = _shape(image_proj["norm.weight"])
    if len(cross_dim) != 1:
        raise FaceIDFileError(f"{source}: image_proj.norm.weight has shape {list(cross_dim)}, expected [C]")
    c = cross_dim[0]
    expect = {"proj.0.weight": (PROJ_HIDDEN, ID_DIM), "proj.0.bias": (PROJ_HIDDEN,), "norm.bias": (c,)}
    for k, s in expect.items():
        if _shape(image_proj[k]) != s:
            raise FaceIDFileError(f"{source}: image_proj.{k} has shape {list(_shape(image_proj[k]))}, expected "
                                  f"{list(s)} (FaceID projects a {ID_DIM}-d ArcFace embedding through {PROJ_HIDDEN})")
    p2 = _shape(image_proj["proj.2.weight"])
    if len(p2) != 2 or p2[1] != PROJ_HIDDEN or p2[0] % c or p2[0] == 0:
        raise FaceIDFileError(f"{source}: image_proj.proj.2.weight has shape {list(p2)}, expected "
                              f"[tokens*{c}, {PROJ_HIDDEN}]")
    if _shape(image_proj["proj.2.bias"]) != (p2[0],):
        raise FaceIDFileError(f"{source}: image_proj.proj.2.bias has shape "
                              f"{list(_shape(image_proj['proj.2.bias']))}, expected [{p2[0]}]")
    num_tokens = p2[0] // c

    procs: dict[int, dict[str, tuple[int, ...]]] = {}
    bad = []
    for k, v in ip_adapter.items():
        m = _PROC_KEY.match(k) if isinstance(k, str) else None
        if m is None:
            bad.append(str(k))
            continue
        procs.setdefault(int(m.group(1)), {})[m.group(2)] = _shape(v)
    if bad:
        raise FaceIDFileError(f"{source}: ip_adapter has keys a FaceID file does not have, such as {bad[:4]} "
                              f"({len(bad)} in all); expected '{{i}}.to_k_ip.weight', '{{i}}.to_v_ip.weight' and "
                              f"'{{i}}.to_{{q,k,v,out}}_lora.{{down,up}}.weight'.")
    if not procs:
        raise FaceIDFileError(f"{source}: ip_adapter is empty")
    n = max(procs) + 1
    lora_names = {f"{p}_lora.{d}.weight" for p in LORA_PROJECTIONS for d in ("down", "up")}
    has_lora = {i for i in procs if lora_names & set(procs[i])}
    if has_lora and len(has_lora) != len(procs):
        raise FaceIDFileError(f"{source}: LoRA weights are present for {len(has_lora)} of {len(procs)} attention "
                              f"processors (missing for e.g. {sorted(set(procs) - has_lora)[:4]}); the file is "
                              f"damaged.")
    # Without LoRA only the cross-attention (odd) processors have weights.
    expected_ids = list(range(n)) if has_lora else list(range(1, n, 2))
    if sorted(procs) != expected_ids or n % 2:
        raise FaceIDFileError(f"{source}: attention processors are numbered {sorted(procs)[:6]}...; expected 0..N-1 "
                              f"with N even (one self- and one cross-attention per transformer block).")
    rank = None
    for i in range(n):
        have = procs.get(i, {})
        want = set(lora_names) if has_lora else set()
        if i % 2:
            want |= {"to_k_ip.weight", "to_v_ip.weight"}
        if set(have) != want:
            raise FaceIDFileError(f"{source}: processor {i} has {sorted(have)}, expected {sorted(want)}")
        if i % 2:
            kip = have["to_k_ip.weight"]
            if len(kip) != 2 or kip[1] != c or have["to_v_ip.weight"] != kip:
                raise FaceIDFileError(f"{source}: processor {i}: to_k_ip {list(kip)} / to_v_ip "
                                      f"{list(have['to_v_ip.weight'])}, expected equal shapes [H, {c}]")
        if has_lora:
            for p in LORA_PROJECTIONS:
                down, up = have[f"{p}_lora.down.weight"], have[f"{p}_lora.up.weight"]
                if len(down) != 2 or len(up) != 2 or up[1] != down[0]:
                    raise FaceIDFileError(f"{source}: processor {i} {p} LoRA: down {list(down)}, up {list(up)} "
                                          f"are not a [r, in] / [out, r] pair")
                rank = down[0] if rank is None else rank
                if down[0] != rank:
                    raise FaceIDFileError(f"{source}: processor {i} {p} LoRA has rank {down[0]}, others {rank}")
            h = have["to_q_lora.up.weight"][0]
            ctx = c if i % 2 else h
            want_in = {"to_q": h, "to_k": ctx, "to_v": ctx, "to_out": h}
            for p in LORA_PROJECTIONS:
                if have[f"{p}_lora.down.weight"][1] != want_in[p] or have[f"{p}_lora.up.weight"][0] != h:
                    raise FaceIDFileError(
                        f"{source}: processor {i} {p} LoRA maps {have[f'{p}_lora.down.weight'][1]} -> "
                        f"{have[f'{p}_lora.up.weight'][0]}, expected {want_in[p]} -> {h}")
            if i % 2 and have["to_k_ip.weight"][0] != h:
                raise FaceIDFileError(f"{source}: processor {i}: to_k_ip width {have['to_k_ip.weight'][0]} "
                                      f"differs from its LoRA width {h}")
            if i % 2 and procs[i - 1]["to_q_lora.up.weight"][0] != h:
                raise FaceIDFileError(f"{source}: processors {i - 1} and {i} (one transformer block) have different "
                                      f"widths")
    if has_lora:
        variant = "FaceID"
    elif num_tokens == 16:
        variant = "FaceID Portrait"
    else:
        variant = "FaceID (without LoRA)"
    family = layout_family(c, n)
    all_tensors = list(image_proj.values()) + list(ip_adapter.values())
    dtypes = {t.dtype for t in all_tensors}
    return FaceIDInfo(
        variant=variant, family=family, num_tokens=num_tokens, cross_dim=c, num_processors=n,
        lora_rank=rank, num_keys=len(all_tensors), num_params=sum(t.numel() for t in all_tensors),
        dtype=next(iter(dtypes)) if len(dtypes) == 1 else torch.float32)


@dataclass
class FaceIDWeights:
    """A checked FaceID state dict. Tensors stay as in the file (fp16 for the published files)."""

    source: str
    info: FaceIDInfo
    image_proj: dict
    ip_adapter: dict

    def kv_weights(self, processor: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ip_adapter[f"{processor}.to_k_ip.weight"], self.ip_adapter[f"{processor}.to_v_ip.weight"]

    def lora_pairs(self) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
        """{(processor, projection): (up [out, r], down [r, in])} of the embedded LoRA ({} when there is none)."""
        if not self.info.lora_rank:
            return {}
        return {(i, p): (self.ip_adapter[f"{i}.{p}_lora.up.weight"], self.ip_adapter[f"{i}.{p}_lora.down.weight"])
                for i in range(self.info.num_processors) for p in LORA_PROJECTIONS}


def faceid_from_state_dict(sd: Mapping, source: str = "the file") -> FaceIDWeights:
    image_proj, ip_adapter = split_faceid_state_dict(sd, source)
    return FaceIDWeights(source, inspect_faceid(image_proj, ip_adapter, source), image_proj, ip_adapter)


def load_faceid_file(path: str | os.PathLike) -> FaceIDWeights:
    """Read and check a FaceID file (.bin or .safetensors)."""
    name = os.path.basename(os.fspath(path))
    return faceid_from_state_dict(read_state_dict(path), name)


# ---------------------------------------------------------------------------------------------------------------
# Separate LoRA files (ip-adapter-faceid_*_lora.safetensors)
# ---------------------------------------------------------------------------------------------------------------

# (suffix of the up matrix, suffix of the down matrix) of the LoRA key conventions ComfyUI also reads.
_LORA_SUFFIXES = (
    (".lora_up.weight", ".lora_down.weight"),
    ("_lora.up.weight", "_lora.down.weight"),
    (".lora_B.weight", ".lora_A.weight"),
    (".lora.up.weight", ".lora.down.weight"),
)


@dataclass(frozen=True)
class LoraPair:
    up: torch.Tensor
    down: torch.Tensor
    alpha: float | None = None


def split_lora_pairs(sd: Mapping, source: str = "the LoRA file") -> dict[str, LoraPair]:
    """{base name: LoraPair} of a plain low-rank LoRA state dict. Any key that is not part of an up/down pair (or
    its ``.alpha``) is an error, as is a pair with one half missing."""
    ups, downs, alphas, bad = {}, {}, {}, []
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            bad.append(str(k))
            continue
        for up_s, down_s in _LORA_SUFFIXES:
            if k.endswith(up_s):
                ups[k[: -len(up_s)]] = v
                break
            if k.endswith(down_s):
                downs[k[: -len(down_s)]] = v
                break
        else:
            if k.endswith(".alpha"):
                alphas[k[: -len(".alpha")]] = v
            else:
                bad.append(k)
    if bad:
        raise FaceIDFileError(f"{source}: keys that are not LoRA up/down/alpha weights, such as {bad[:4]} "
                              f"({len(bad)} in all). Only plain LoRA files (lora_up/lora_down) are accepted here.")
    half = sorted(set(ups) ^ set(downs))
    orphan = sorted(set(alphas) - set(ups))
    if half or orphan:
        raise FaceIDFileError(f"{source}: incomplete LoRA pairs for {(half + orphan)[:4]}; the file is damaged.")
    if not ups:
        raise FaceIDFileError(f"{source}: holds no LoRA weights")
    pairs = {}
    for base in ups:
        up, down = ups[base], downs[base]
        if up.ndim < 2 or down.ndim < 2 or up.shape[1] != down.shape[0]:
            raise FaceIDFileError(f"{source}: {base}: up {list(up.shape)} and down {list(down.shape)} do not form a "
                                  f"low-rank pair")
        alpha = float(alphas[base].float().item()) if base in alphas else None
        pairs[base] = LoraPair(up, down, alpha)
    return pairs


def processor_lora_pairs(pairs: Mapping[str, LoraPair]) -> dict[tuple[int, str], LoraPair] | None:
    """If every base name is '{i}.to_q' etc. (the FaceID .bin convention), {(i, projection): pair}; else None."""
    out = {}
    for base, pair in pairs.items():
        m = re.fullmatch(r"(\d+)\.(to_q|to_k|to_v|to_out)", base)
        if m is None:
            return None
        out[(int(m.group(1)), m.group(2))] = pair
    return out


# ---------------------------------------------------------------------------------------------------------------
# The UNet's attention layers and the processor-index map
# ---------------------------------------------------------------------------------------------------------------

_BLOCK_NAMES = {"input_blocks": "input", "middle_block": "middle", "output_blocks": "output"}
_ATTN_KEY = re.compile(r"^(?:(input_blocks|output_blocks)\.(\d+)|(middle_block))\.(\d+)\.transformer_blocks\.(\d+)\."
                       r"(attn1|attn2)\.to_(q|k)\.weight$")


@dataclass(frozen=True)
class AttentionLayer:
    """One attention layer of a ComfyUI UNet, with the FaceID processor index that belongs to it."""

    processor: int
    attn: str  # "attn1" (self-attention) or "attn2" (cross-attention)
    block: tuple[str, int]  # ComfyUI's transformer_options["block"]: ("input", id), ("middle", 0), ("output", id)
    transformer_index: int  # ComfyUI's block_index: position in the SpatialTransformer's transformer_blocks
    prefix: str  # module path without "diffusion_model.", e.g. "input_blocks.1.1.transformer_blocks.0.attn2"
    width: int  # query / output width H
    context_dim: int  # key / value input width (C for attn2, H for attn1)

    @property
    def patch_key(self) -> tuple[str, int, int]:
        """The attn2 replace-patch key ComfyUI looks up first: (block name, block id, transformer index)."""
        return (self.block[0], self.block[1], self.transformer_index)

    def weight_key(self, projection: str, prefix: str = "diffusion_model.") -> str:
        """The UNet weight a LoRA projection ("to_q", "to_k", "to_v", "to_out") patches."""
        sub = "to_out.0" if projection == "to_out" else projection
        return f"{prefix}{self.prefix}.{sub}.weight"


def layout_from_shapes(shapes: Mapping[str, Sequence[int]], prefix: str = "diffusion_model.") -> list[AttentionLayer]:
    """The attention layers of a ComfyUI UNet from its weight names and shapes (a state dict, or {name: shape}),
    numbered like the FaceID files: input blocks, then output blocks, then the middle block, attn1 before attn2."""
    found: dict[tuple, dict] = {}
    for k, v in shapes.items():
        if not k.startswith(prefix):
            continue
        m = _ATTN_KEY.match(k[len(prefix):])
        if m is None:
            continue
        group, block_id, middle, sub, t, attn, proj = m.groups()
        group, block_id = (middle, -1) if middle else (group, int(block_id))
        entry = found.setdefault((group, block_id, int(sub), int(t), attn), {})
        entry[proj] = tuple(int(s) for s in (v.shape if hasattr(v, "shape") else v))
    order = {"input_blocks": 0, "output_blocks": 1, "middle_block": 2}
    layers = []
    for i, key in enumerate(sorted(found, key=lambda k: (order[k[0]], k[1], k[2], k[3], k[4]))):
        group, block_id, sub, t, attn = key
        entry = found[key]
        if "q" not in entry or "k" not in entry:
            raise ValueError(f"UNet weights for {key} are incomplete (have {sorted(entry)})")
        if group == "middle_block":
            block, path = ("middle", 0), f"middle_block.{sub}"
        else:
            block, path = (_BLOCK_NAMES[group], block_id), f"{group}.{block_id}.{sub}"
        layers.append(AttentionLayer(
            processor=i, attn=attn, block=block, transformer_index=t,
            prefix=f"{path}.transformer_blocks.{t}.{attn}",
            width=entry["q"][0], context_dim=entry["k"][1]))
    for a, b in zip(layers[0::2], layers[1::2], strict=False):
        if (a.attn, b.attn) != ("attn1", "attn2") or a.prefix[:-1] != b.prefix[:-1]:
            raise ValueError(f"UNet transformer block {a.prefix[:-6]} does not have one attn1 and one attn2; "
                             f"IP-Adapter FaceID needs the SD1.5/SDXL transformer layout")
    if len(layers) % 2:
        raise ValueError("UNet has an odd number of attention layers; IP-Adapter FaceID needs one attn1 and one "
                         "attn2 per transformer block")
    return layers


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


def describe_layout(layers: Sequence[AttentionLayer]) -> str:
    cross = sorted({la.context_dim for la in layers if la.attn == "attn2"})
    c = cross[0] if len(cross) == 1 else cross
    return (f"{layout_family(c, len(layers)) if isinstance(c, int) else 'a UNet'} (cross-attention dim {c}, "
            f"{len(layers)} attention layers)")


def check_compatible(weights: FaceIDWeights, layers: Sequence[AttentionLayer], model_name: str = "") -> None:
    """Raise FaceIDMismatchError (naming the file, the family it is for, and the family it met) unless every
    processor of the file fits the corresponding UNet layer exactly."""
    info = weights.info
    problems = []
    if len(layers) != info.num_processors:
        problems.append(f"{info.num_processors} attention processors in the file vs {len(layers)} attention "
                        f"layers in the model")
    else:
        for la in layers:
            i = la.processor
            if la.attn == "attn2":
                k_ip, _ = weights.kv_weights(i)
                if _shape(k_ip) != (la.width, la.context_dim):
                    problems.append(f"processor {i} ({la.prefix}): to_k_ip {list(_shape(k_ip))} vs layer "
                                    f"[{la.width}, {la.context_dim}]")
            if info.lora_rank:
                up = weights.ip_adapter[f"{i}.to_q_lora.up.weight"]
                down_k = weights.ip_adapter[f"{i}.to_k_lora.down.weight"]
                if up.shape[0] != la.width or down_k.shape[1] != la.context_dim:
                    problems.append(f"processor {i} ({la.prefix}): LoRA {up.shape[0]}x{down_k.shape[1]} vs layer "
                                    f"{la.width}x{la.context_dim}")
    if not problems:
        return
    met = describe_layout(layers)
    model_family = layout_family(
        next((la.context_dim for la in layers if la.attn == "attn2"), 0), len(layers))
    fix_file = FACEID_FILE_FOR.get(model_family)
    fix = (f"Load {fix_file}, the FaceID file made for {model_family}, or use a {info.family} checkpoint."
           if fix_file else f"Use a {info.family} checkpoint with this file.")
    model = f" ({model_name})" if model_name else ""
    raise FaceIDMismatchError(
        f"{weights.source} is an {info.describe()}, but the model it is applied to{model} is {met}: "
        f"{problems[0]}{f' (and {len(problems) - 1} more mismatches)' if len(problems) > 1 else ''}. {fix}")


def embedded_lora_targets(weights: FaceIDWeights, layers: Sequence[AttentionLayer],
                          prefix: str = "diffusion_model.") -> dict[str, LoraPair]:
    """{UNet weight key: LoraPair} for the file's embedded LoRA (every pair maps to exactly one weight)."""
    by_proc = {la.processor: la for la in layers}
    out = {}
    for (i, p), (up, down) in weights.lora_pairs().items():
        if i not in by_proc:
            raise FaceIDMismatchError(f"{weights.source}: LoRA of processor {i} has no attention layer in the model")
        out[by_proc[i].weight_key(p, prefix)] = LoraPair(up, down, None)
    return out


def processor_lora_targets(pairs: Mapping[tuple[int, str], LoraPair], layers: Sequence[AttentionLayer],
                           source: str, prefix: str = "diffusion_model.") -> dict[str, LoraPair]:
    by_proc = {la.processor: la for la in layers}
    missing = sorted({i for i, _ in pairs if i not in by_proc})
    if missing:
        raise FaceIDMismatchError(f"{source}: LoRA processors {missing[:5]} have no attention layer in the model "
                                  f"({describe_layout(layers)})")
    return {by_proc[i].weight_key(p, prefix): pair for (i, p), pair in pairs.items()}


# ---------------------------------------------------------------------------------------------------------------
# The projection, the adapter module, the attention term
# ---------------------------------------------------------------------------------------------------------------


class FaceIDProjection(nn.Module):
    """ArcFace embedding [n, 512] -> identity tokens [n, T, C]: Linear 512->1024, GELU, Linear 1024->T*C, LayerNorm C.
    Parameter names match the files' image_proj (proj.0, proj.2, norm)."""

    def __init__(self, cross_dim: int, num_tokens: int = 4, id_dim: int = ID_DIM, hidden: int = PROJ_HIDDEN):
        super().__init__()
        self.cross_dim, self.num_tokens = cross_dim, num_tokens
        self.proj = nn.Sequential(nn.Linear(id_dim, hidden), nn.GELU(), nn.Linear(hidden, num_tokens * cross_dim))
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        x = self.proj(embeds).reshape(-1, self.num_tokens, self.cross_dim)
        return self.norm(x)


class FaceIDAdapterModule(nn.Module):
    """The FaceID weights used at sampling time: the projection (kept in float32: it is small and runs once per
    identity) and, per cross-attention processor i, ``to_k_ip[str(i)]`` / ``to_v_ip[str(i)]`` (Linear C -> H, no
    bias, in the file's dtype)."""

    def __init__(self, weights: FaceIDWeights):
        super().__init__()
        info = weights.info
        self.info = info
        self.image_proj = FaceIDProjection(info.cross_dim, info.num_tokens)
        self.image_proj.load_state_dict({k: v.float() for k, v in weights.image_proj.items()}, assign=True)
        self.to_k_ip = nn.ModuleDict()
        self.to_v_ip = nn.ModuleDict()
        for i in range(1, info.num_processors, 2):
            for name, w in zip(("to_k_ip", "to_v_ip"), weights.kv_weights(i), strict=True):
                lin = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
                lin.weight = nn.Parameter(w.detach(), requires_grad=False)  # shares the file's storage
                getattr(self, name)[str(i)] = lin
        self.requires_grad_(False)

    @torch.no_grad()
    def project(self, embeds: torch.Tensor) -> torch.Tensor:
        p = self.image_proj.proj[0].weight
        return self.image_proj(embeds.to(device=p.device, dtype=p.dtype))

    def kv(self, processor: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.to_k_ip[str(processor)].weight
        v = self.to_v_ip[str(processor)].weight
        return k.to(device=device, dtype=dtype), v.to(device=device, dtype=dtype)


def decoupled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                        upcast: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head. q [B, Nq, heads*d], k/v [B, Nk, heads*d] -> [B, Nq, heads*d]."""
    b, nq, inner = q.shape
    d = inner // heads
    dtype = q.dtype
    if upcast and dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    qh, kh, vh = (t.reshape(b, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh)
    return out.transpose(1, 2).reshape(b, nq, inner).to(dtype)


def ip_attention_term(q: torch.Tensor, tokens: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, heads: int,
                      upcast: bool = False) -> torch.Tensor:
    """The decoupled cross-attention of IP-Adapter: attention of q over the identity tokens [B, T, C], with the
    keys and values ``tokens @ w_k^T`` / ``tokens @ w_v^T`` ([H, C] weights). Returns [B, Nq, H]."""
    k = torch.nn.functional.linear(tokens, w_k)
    v = torch.nn.functional.linear(tokens, w_v)
    return decoupled_attention(q, k, v, heads, upcast=upcast)


# ---------------------------------------------------------------------------------------------------------------
# The branch contract: identity tokens per cond index and per batch element
# ---------------------------------------------------------------------------------------------------------------


def as_embeddings(value, what: str = "identity") -> torch.Tensor:
    """A float tensor [n, 512] from a tensor [512] / [n, 512] (or anything torch.as_tensor takes)."""
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[-1] != ID_DIM or t.shape[0] == 0:
        raise ValueError(f"{what}: expected ArcFace embeddings of shape [n, {ID_DIM}], got {list(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t


def _version(t: torch.Tensor) -> int:
    """In-place modification counter; inference tensors (ComfyUI runs nodes under torch.inference_mode) have none,
    and cannot be modified in place either, so 0 is exact for them."""
    return 0 if t.is_inference() else t._version


@dataclass
class IdentityProjector:
    """Projects identities through a FaceIDAdapterModule, with the null identity (the projection of the zero
    embedding) for every cond index that has none, and caches the results.

    `batch_tokens` implements the branch contract: the batch of one UNet call is ``len(cond_or_uncond)`` chunks of
    equal size; chunk j belongs to cond index ``cond_or_uncond[j]`` and gets ``identities[cond_index]`` ([n, 512],
    n == 1 broadcast to the chunk, else n == chunk size: one identity per element) or the null identity.
    """

    module: FaceIDAdapterModule
    max_cached: int = 16
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _last: tuple | None = field(default=None, repr=False)

    def null_tokens(self, device, dtype) -> torch.Tensor:
        return self.tokens(None, device, dtype)

    def tokens(self, embeds: torch.Tensor | None, device, dtype) -> torch.Tensor:
        """[n, T, C] tokens of one identity tensor (None: the null identity, n = 1)."""
        p = self.module.image_proj.proj[0].weight
        if embeds is None:
            key = ("null", p.device, device, dtype)
            ref, version = None, None
        else:
            key = (id(embeds), p.device, device, dtype)
            ref, version = weakref.ref(embeds), _version(embeds)
        hit = self._cache.get(key)
        if hit is not None and (ref is None or (hit[0]() is embeds and hit[1] == version)):
            self._cache.move_to_end(key)
            return hit[2]
        src = torch.zeros(1, ID_DIM) if embeds is None else embeds
        out = self.module.project(src).to(device=device, dtype=dtype)
        self._cache[key] = (ref if ref is not None else (lambda: None), version, out)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return out

    def batch_tokens(self, cond_or_uncond: Sequence[int], batch: int, identities: Mapping | None,
                     device, dtype) -> torch.Tensor:
        """[batch, T, C] tokens for one UNet call (see the class docstring)."""
        identities = identities or {}
        chunks = list(cond_or_uncond)
        refs = tuple(e for e in identities.values() if isinstance(e, torch.Tensor))
        # inference tensors (ComfyUI runs nodes under torch.inference_mode) have no version counter; they cannot be
        # modified in place either, so their identity alone is a valid cache key
        ids_key = tuple(sorted((int(c), id(e), _version(e))
                               for c, e in identities.items() if isinstance(e, torch.Tensor)))
        key = (tuple(int(c) for c in chunks), batch, ids_key, len(identities), device, dtype)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        if not chunks or batch % len(chunks):
            raise ValueError(f"FaceID patch: a batch of {batch} rows cannot be split into {len(chunks)} guidance "
                             f"chunks (cond_or_uncond={chunks})")
        per = batch // len(chunks)
        parts = []
        for c in chunks:
            e = identities.get(c)
            if e is None:
                t = self.null_tokens(device, dtype)
            else:
                if not isinstance(e, torch.Tensor) or e.ndim != 2 or e.shape[1] != ID_DIM:
                    raise ValueError(f"FaceID patch: identity for cond index {c} must be a tensor [n, {ID_DIM}], got "
                                     f"{getattr(e, 'shape', type(e).__name__)}")
                if e.shape[0] not in (1, per):
                    raise ValueError(
                        f"FaceID patch: identity for cond index {c} has {e.shape[0]} embeddings, but each guidance "
                        f"chunk of this batch has {per} elements; give 1 embedding (shared) or {per} (one per "
                        f"element)")
                t = self.tokens(e, device, dtype)
            parts.append(t.expand(per, -1, -1) if t.shape[0] == 1 else t)
        out = torch.cat(parts, 0) if len(parts) > 1 else parts[0].contiguous()
        # hold the identity tensors (refs) so that their ids cannot be reused while this entry is cached
        self._last = (key, out, refs)
        return out

    def __deepcopy__(self, memo):
        # The module is shared (read-only weights); caches are per copy.
        return IdentityProjector(self.module, self.max_cached)


def percent_window_active(sigma: float, sigma_start: float, sigma_end: float) -> bool:
    """True when sigma lies in [sigma_end, sigma_start] (start_percent maps to the larger sigma)."""
    return sigma_end <= sigma <= sigma_start or math.isclose(sigma, sigma_start) or math.isclose(sigma, sigma_end)
