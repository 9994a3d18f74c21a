"""The UNet's attention layers and the map from a FaceID file's processor indices to them.

The files number their processors in diffusers' ``attn_processors`` order: down blocks, then up blocks, then the mid
block LAST (ComfyUI: input_blocks, output_blocks, middle_block); within each transformer block attn1 (self) gets the
even index and attn2 (cross) the next odd one. ComfyUI's attn2 replace-patch keys are ``("input", id, t)``,
``("middle", 0, t)`` and ``("output", id, t)`` (the UNet sets the middle block to ``("middle", 0)``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import FaceIDMismatchError
from .lora import LoraPair

if TYPE_CHECKING:
    from .files import FaceIDWeights


# (cross-attention dim, number of attention layers) -> family name, for messages and detection.
KNOWN_LAYOUTS = {(768, 32): "SD1.5", (2048, 140): "SDXL", (1024, 32): "SD2.x"}
FACEID_FILE_FOR = {"SD1.5": "ip-adapter-faceid_sd15.bin", "SDXL": "ip-adapter-faceid_sdxl.bin"}
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



def layout_family(cross_dim: int, num_layers: int) -> str:
    """A family name for a (cross-attention dim, attention-layer count) pair."""
    return KNOWN_LAYOUTS.get((cross_dim, num_layers),
                             f"a UNet with cross-attention dim {cross_dim} and {num_layers} attention layers")


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
                if tuple(k_ip.shape) != (la.width, la.context_dim):
                    problems.append(f"processor {i} ({la.prefix}): to_k_ip {list(k_ip.shape)} vs layer "
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
