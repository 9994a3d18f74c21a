"""Separate FaceID LoRA files (ip-adapter-faceid_*_lora.safetensors): low-rank pairs under any of the key
conventions ComfyUI reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .errors import FaceIDFileError


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
