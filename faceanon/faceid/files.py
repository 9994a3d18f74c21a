"""Reading IP-Adapter FaceID files safely and checking them completely (every key, every shape).

File layout (docs/id_adapter.md, research model_files.md): ``.bin`` = ``{"image_proj": {...}, "ip_adapter": {...}}``;
``.safetensors`` = one flat dict with ``image_proj.`` / ``ip_adapter.`` prefixes. ``image_proj``: ``proj.0.weight
[1024, 512]``, ``proj.0.bias``, ``proj.2.weight [T*C, 1024]``, ``proj.2.bias``, ``norm.weight [C]``, ``norm.bias``.
``ip_adapter``: per processor ``i`` the rank-r LoRA ``{i}.to_{q,k,v,out}_lora.{down,up}.weight`` (``down [r, in]``,
``up [out, r]``) and, for odd ``i`` only, ``{i}.to_k_ip.weight`` / ``{i}.to_v_ip.weight`` ``[H, C]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .errors import FaceIDFileError
from .layers import layout_family


ID_DIM = 512  # ArcFace embedding size
PROJ_HIDDEN = 1024  # FaceID MLP hidden size (mult=2 of 512)
LORA_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")
IMAGE_PROJ_KEYS = ("proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias", "norm.weight", "norm.bias")
_PROC_KEY = re.compile(r"^(\d+)\.(to_k_ip\.weight|to_v_ip\.weight|(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight)$")


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

    def describe(self) -> str:
        lora = f"rank-{self.lora_rank} LoRA" if self.lora_rank else "no LoRA"
        return (f"IP-Adapter {self.variant} for {self.family} (cross-attention dim {self.cross_dim}, "
                f"{self.num_processors} attention layers, {self.num_tokens} tokens, {lora})")



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
    missing = [k for k in IMAGE_PROJ_KEYS if k not in keys]
    if missing:
        raise FaceIDFileError(f"{source}: image_proj lacks {missing}; an IP-Adapter FaceID projection has "
                              f"{list(IMAGE_PROJ_KEYS)}. The file is not a FaceID file or is damaged.")
    extra = sorted(keys - set(IMAGE_PROJ_KEYS))
    if extra:
        raise FaceIDFileError(f"{source}: image_proj has unexpected keys {extra[:5]}; a plain FaceID projection has "
                              f"exactly {list(IMAGE_PROJ_KEYS)}.")
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
