"""The identity branch: IP-Adapter FaceID loading and per-branch identity patching.

Nodes: FaceAnonLoadIDAdapter (file from models/ipadapter -> FACEANON_ID_ADAPTER) and FaceAnonApplyIDAdapter
(MODEL + adapter -> patched MODEL clone).

Public API for the guider and the inversion (the branch contract, docs/id_adapter.md):

* ``apply_id_adapter(model, adapter, weight=1.0, lora_strength=1.0, start_percent=0.0, end_percent=1.0,
  identities=None) -> ModelPatcher``: a patched CLONE; the input model is untouched.
* ``with_branch_identities(model_options, identities) -> dict``: a copy of `model_options` whose
  ``transformer_options["faceanon_identity"]`` is `identities`.

`identities` maps a cond index (the values in ``transformer_options["cond_or_uncond"]``: the position of the cond
in the list given to ``comfy.samplers.calc_cond_batch``; with core CFG 0 = positive, 1 = negative) to a float
tensor [n, 512] of raw ArcFace embeddings, already scaled / negated as the caller wants. n == 1 is shared by every
batch element of that chunk; otherwise n must equal the per-cond batch size. A cond index missing from the map
gets the NULL identity: the projection of the zero embedding through the FaceID projection + LayerNorm (learned
non-zero tokens), never "adapter off". The map travels as one immutable value (`faceanon.faceid.BranchIdentities`),
which the token cache is keyed by. The map in transformer_options, when present (even empty), replaces the map given
at apply time (which holds at most index 0, from the node's optional identity input).
"""

from __future__ import annotations

import copy
import logging
import math
import os

import comfy.lora
import comfy.model_management
import comfy.model_patcher
import folder_paths
import torch

from ..faceanon import faceid, model_files
from .knobs import knob_input
from .types import IDAdapter, Identity, io

logger = logging.getLogger(__name__)

# transformer_options key read by the attention patch (nodes/inversion.py uses the same name).
IDENTITY_KEY = "faceanon_identity"
EMBEDDED_LORA = "embedded (from the adapter file)"


# ---------------------------------------------------------------------------------------------------------------
# The adapter value
# ---------------------------------------------------------------------------------------------------------------


class LoadedIDAdapter:
    """What flows on a FACEANON_ID_ADAPTER socket: the checked FaceID weights, the module used at sampling time
    (managed by ComfyUI's memory manager through `patcher`), and the LoRA to apply (embedded or separate).

    Read-only once built; deep copies share it (ModelPatcher.clone deep-copies model_options, which hold patches
    referring to this object)."""

    def __init__(self, weights: faceid.FaceIDWeights, lora_pairs: dict | None = None, lora_source: str | None = None):
        self.weights = weights
        self.info = weights.info
        self.source = weights.source
        self.module = faceid.FaceIDAdapterModule(weights)
        self.projector = faceid.IdentityProjector(self.module)
        self.kv_weights = faceid.CastWeights(self.module)
        self.lora_pairs = lora_pairs  # None: the LoRA embedded in the adapter file
        self.lora_source = lora_source or weights.source
        self.patcher = comfy.model_patcher.ModelPatcher(
            self.module, load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device())

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        lora = "embedded LoRA" if self.lora_pairs is None else f"LoRA from {self.lora_source}"
        return f"<FaceAnon ID adapter {self.source}: {self.info.describe()}; {lora}>"


def load_id_adapter(path: str, lora_path: str | None = None) -> LoadedIDAdapter:
    """Load a FaceID file (and optionally a separate LoRA file, which then replaces the embedded one)."""
    weights = faceid.load_faceid_file(path)
    pairs, lora_source = None, None
    if lora_path:
        lora_source = os.path.basename(lora_path)
        pairs = faceid.split_lora_pairs(faceid.read_state_dict(lora_path), lora_source)
    adapter = LoadedIDAdapter(weights, pairs, lora_source)
    logger.info("FaceAnon: loaded %r", adapter)
    return adapter


# ---------------------------------------------------------------------------------------------------------------
# The attention patch
# ---------------------------------------------------------------------------------------------------------------


class _PatchState:
    """Shared by every layer's patch of one apply: adapter, weight, sigma window, apply-time identities."""

    def __init__(self, adapter: LoadedIDAdapter, weight: float, sigma_start: float, sigma_end: float,
                 identities: faceid.BranchIdentities):
        self.adapter = adapter
        self.weight = float(weight)
        self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)
        self.identities = identities
        self.always = sigma_start >= 1e8 and sigma_end <= 0.0
        self._last_sigmas = None  # (sigmas tensor, active): one host sync per UNet call, not per layer

    def active(self, extra_options: dict) -> bool | torch.Tensor:
        """True / False for the whole call, or a [batch] bool tensor when the rows of one call are at different
        sigmas (the batched inversion evaluates several steps per call)."""
        if self.always:
            return True
        sigmas = extra_options.get("sigmas")
        if sigmas is None:
            return True
        last = self._last_sigmas
        if last is not None and last[0] is sigmas:
            return last[1]
        values = sigmas.detach().reshape(-1).float().cpu().tolist()
        rows = [faceid.percent_window_active(v, self.sigma_start, self.sigma_end) for v in values]
        result = rows[0] if all(r == rows[0] for r in rows) else torch.tensor(rows)
        self._last_sigmas = (sigmas, result)
        return result

    def __deepcopy__(self, memo):
        return self


def _text_attention(q, k, v, extra_options):
    import comfy.ldm.modules.attention as attention  # read at call time: other packs may swap the function

    return attention.optimized_attention(q, k, v, extra_options["n_heads"],
                                         attn_precision=extra_options.get("attn_precision"),
                                         transformer_options=extra_options)


class FaceIDAttn2Patch:
    """attn2 replace patch of one cross-attention layer: the text attention (or the patch that was registered on
    this key before: chained, never overwritten) plus weight x the decoupled attention over the identity tokens of
    each batch row (per cond index from ``cond_or_uncond``, null identity where none is given)."""

    def __init__(self, state: _PatchState, layer: faceid.AttentionLayer, previous=None):
        self.state = state
        self.layer = layer
        self.previous = previous

    def __call__(self, q, k, v, extra_options):
        if self.previous is not None:
            out = self.previous(q, k, v, extra_options)
        else:
            out = _text_attention(q, k, v, extra_options)
        st = self.state
        active = False if st.weight == 0.0 else st.active(extra_options)
        if active is False:
            return out
        identities = extra_options.get(IDENTITY_KEY)
        if identities is None:
            identities = st.identities
        elif not isinstance(identities, faceid.BranchIdentities):
            raise TypeError(f"transformer_options[{IDENTITY_KEY!r}] must be a BranchIdentities value (set it with "
                            f"with_branch_identities), got {type(identities).__name__}")
        cond_or_uncond = extra_options.get("cond_or_uncond") or [0]
        adapter = st.adapter
        tokens = adapter.projector.batch_tokens(cond_or_uncond, q.shape[0], identities, q.device, q.dtype)
        w_k, w_v = adapter.kv_weights.kv(self.layer.processor, q.device, q.dtype)
        term = faceid.ip_attention_term(q, tokens, w_k, w_v, extra_options["n_heads"],
                                        upcast=extra_options.get("attn_precision") == torch.float32)
        if isinstance(active, torch.Tensor):  # rows at sigmas outside the window get no identity term
            rows = active.repeat(term.shape[0] // active.shape[0])  # "sigmas" holds one guidance chunk's rows
            term = term * rows.to(term.device, term.dtype).view(-1, *([1] * (term.ndim - 1)))
        return torch.add(out, term.to(out.dtype), alpha=st.weight)

    # ComfyUI's memory manager: model_patches_to(device / dtype) and model_patches_models()
    def to(self, device_or_dtype):
        # ComfyUI moves the model (loading it for a run, or offloading it): the weights converted to the UNet's
        # dtype/device and the projected tokens of the last run are dropped, and made once again in the next.
        self.state.adapter.kv_weights.clear()
        self.state.adapter.projector.clear()
        if self.previous is not None and hasattr(self.previous, "to"):
            self.previous = self.previous.to(device_or_dtype)
        return self

    def models(self):
        models = [self.state.adapter.patcher]
        if self.previous is not None and hasattr(self.previous, "models"):
            models += self.previous.models()
        return models

    def __deepcopy__(self, memo):
        # Cheap: the state (adapter weights, identities) is shared; a chained foreign patch is copied as ComfyUI
        # would have copied it.
        return FaceIDAttn2Patch(self.state, self.layer, copy.deepcopy(self.previous, memo))


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def branch_identities(identities, what: str = "identities") -> faceid.BranchIdentities:
    """`identities` ({cond index: tensor [n, 512]}, None, or already a BranchIdentities) as the immutable value."""
    if isinstance(identities, faceid.BranchIdentities):
        return identities
    return faceid.BranchIdentities(identities, what)


def with_branch_identities(model_options: dict,
                           identities: faceid.BranchIdentities | dict[int, torch.Tensor]) -> dict:
    """A copy of `model_options` (the given dict is never mutated) whose transformer_options carry
    ``faceanon_identity = identities`` as a `BranchIdentities` value (made once: pass the value itself when the same
    identities serve many calls). An empty map means the null identity in every branch."""
    ids = branch_identities(identities)
    mo = comfy.model_patcher.create_model_options_clone(model_options)
    to = dict(mo.get("transformer_options", {}))
    to[IDENTITY_KEY] = ids
    mo["transformer_options"] = to
    return mo


def model_attention_layout(model) -> list[faceid.AttentionLayer]:
    """The attention layers of a ModelPatcher's UNet, numbered like the FaceID files."""
    shapes = {k: tuple(v.shape) for k, v in model.model_state_dict(filter_prefix="diffusion_model.").items()}
    layers = faceid.layout_from_shapes(shapes)
    if not layers:
        raise ValueError(f"IP-Adapter FaceID needs an SD1.5 or SDXL UNet; this model ({type(model.model).__name__}) "
                         f"has no UNet transformer blocks. Use an SD1.5 or SDXL checkpoint.")
    return layers


def _model_name(model) -> str:
    config = getattr(model.model, "model_config", None)
    return f"model config {type(config).__name__}" if config is not None else type(model.model).__name__


def _lora_targets(model, adapter: LoadedIDAdapter, layers) -> dict[str, faceid.LoraPair]:
    if adapter.lora_pairs is None:
        return faceid.embedded_lora_targets(adapter.weights, layers)
    source = adapter.lora_source
    by_proc = faceid.processor_lora_pairs(adapter.lora_pairs)
    if by_proc is not None:
        return faceid.processor_lora_targets(by_proc, layers, source)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    unmapped = sorted(b for b in adapter.lora_pairs if b not in key_map)
    if unmapped:
        raise faceid.FaceIDMismatchError(
            f"{source}: {len(unmapped)} of {len(adapter.lora_pairs)} LoRA weights map to no weight of this model "
            f"({faceid.describe_layout(layers)}), e.g. {unmapped[:3]}. Is it the LoRA of another base model? Use "
            f"the _lora file that belongs to {adapter.source}, or keep the LoRA embedded in the adapter file.")
    targets: dict[str, faceid.LoraPair] = {}
    for base, pair in adapter.lora_pairs.items():
        key = key_map[base]
        if key in targets:
            raise faceid.FaceIDFileError(f"{source}: two LoRA entries patch the same weight {key}")
        targets[key] = pair
    return targets


def _apply_lora(m, adapter: LoadedIDAdapter, layers, strength: float) -> int:
    shapes = {k: tuple(v.shape) for k, v in m.model_state_dict(filter_prefix="diffusion_model.").items()}
    targets = _lora_targets(m, adapter, layers)
    if not targets:
        logger.info("FaceAnon: %s has no LoRA (%s); lora_strength ignored", adapter.source, adapter.info.variant)
        return 0
    for key, pair in targets.items():
        shape = shapes.get(key)
        if shape is None:
            raise faceid.FaceIDMismatchError(f"{adapter.lora_source}: LoRA target {key} is not a weight of this model")
        want = (pair.up.shape[0], math.prod(pair.down.shape[1:]))
        if want != (shape[0], math.prod(shape[1:])):
            raise faceid.FaceIDMismatchError(
                f"{adapter.lora_source}: LoRA for {key} is {want[0]}x{want[1]} but the weight is {list(shape)}; the "
                f"LoRA belongs to another base model than this one ({faceid.describe_layout(layers)})")
    lora_sd, to_load = {}, {}
    for n, (key, pair) in enumerate(targets.items()):
        base = f"faceanon_faceid.{n}"
        lora_sd[f"{base}.lora_up.weight"] = pair.up
        lora_sd[f"{base}.lora_down.weight"] = pair.down
        if pair.alpha is not None:
            lora_sd[f"{base}.alpha"] = torch.tensor(pair.alpha)
        to_load[base] = key
    patches = comfy.lora.load_lora(lora_sd, to_load, log_missing=False)
    applied = set(m.add_patches(patches, strength))
    if set(patches) != set(targets) or applied != set(targets):
        missing = sorted(set(targets) - (set(patches) & applied))
        raise faceid.FaceIDMismatchError(f"{adapter.lora_source}: {len(missing)} LoRA weights could not be applied "
                                         f"through ComfyUI's weight patching, e.g. {missing[:3]}")
    return len(targets)


def apply_id_adapter(model, adapter: LoadedIDAdapter, weight: float = 1.0, lora_strength: float = 1.0,
                     start_percent: float = 0.0, end_percent: float = 1.0,
                     identities: faceid.BranchIdentities | dict[int, torch.Tensor] | None = None):
    """Return a clone of `model` (a ModelPatcher; the input is untouched) with the FaceID LoRA applied through
    ComfyUI's weight patching at `lora_strength`, and an attn2 replace patch on every cross-attention layer of the
    input, middle and output blocks that adds ``weight`` x the identity attention between `start_percent` and
    `end_percent` of the schedule. `identities` (optional) is the default {cond index: [n, 512]} map, replaced by
    ``transformer_options["faceanon_identity"]`` when that is present (see `with_branch_identities`)."""
    if not isinstance(adapter, LoadedIDAdapter):
        raise TypeError(f"adapter must come from FaceAnonLoadIDAdapter / load_id_adapter, got "
                        f"{type(adapter).__name__}")
    if not (0.0 <= start_percent <= end_percent <= 1.0):
        raise ValueError(f"need 0 <= start_percent <= end_percent <= 1, got {start_percent} and {end_percent}")
    for name, value in (("weight", weight), ("lora_strength", lora_strength)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number, got {value}")
    defaults = branch_identities(identities)
    layers = model_attention_layout(model)
    faceid.check_compatible(adapter.weights, layers, _model_name(model))

    m = model.clone()
    n_lora = _apply_lora(m, adapter, layers, lora_strength) if lora_strength != 0 else 0
    ms = m.get_model_object("model_sampling")
    state = _PatchState(adapter, weight, ms.percent_to_sigma(start_percent), ms.percent_to_sigma(end_percent),
                        defaults)
    existing = m.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {})
    chained = 0
    for la in layers:
        if la.attn != "attn2":
            continue
        previous = existing.get(la.patch_key, existing.get(la.block))
        chained += previous is not None
        m.set_model_attn2_replace(FaceIDAttn2Patch(state, la, previous), la.block[0], la.block[1],
                                  la.transformer_index)
    logger.info("FaceAnon: %s on %d cross-attention layers (%d chained to an existing patch), LoRA on %d weights "
                "at %.2f, weight %.2f, %.0f%%-%.0f%%", adapter.source, len(layers) // 2, chained, n_lora,
                lora_strength, weight, 100 * start_percent, 100 * end_percent)
    return m


def identity_embeddings(value) -> torch.Tensor:
    """[n, 512] float tensor from a FACEANON_IDENTITY value: a tensor / array, or an object or dict carrying it as
    `embeddings` or `embedding`."""
    for attr in ("embeddings", "embedding"):
        if isinstance(value, dict) and attr in value:
            value = value[attr]
            break
        if hasattr(value, attr) and not isinstance(value, torch.Tensor):
            value = getattr(value, attr)
            break
    try:
        return faceid.as_embeddings(value, "identity").float()
    except (TypeError, RuntimeError) as e:
        raise TypeError(f"identity: cannot read ArcFace embeddings from a {type(value).__name__}") from e


# ---------------------------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------------------------


class FaceAnonLoadIDAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonLoadIDAdapter",
            display_name="Load ID Adapter (FaceAnon)",
            category="FaceAnon/identity",
            description=("Loads an IP-Adapter FaceID file from models/ipadapter (ip-adapter-faceid_sd15.bin for "
                         "SD1.5, ip-adapter-faceid_sdxl.bin for SDXL; .safetensors conversions too), checks every "
                         "key, and detects the variant and the base model it is for. The rank-128 LoRA embedded in "
                         "the file is used unless a separate _lora file is chosen."),
            inputs=[
                io.Combo.Input("adapter",
                               options=model_files.with_documented(folder_paths.get_filename_list("ipadapter"),
                                                                   "ipadapter"),
                               tooltip="IP-Adapter FaceID file in models/ipadapter (the FaceID files are listed even "
                                       "when missing: the loader then says where to get them)"),
                io.Combo.Input("lora", options=[EMBEDDED_LORA] + folder_paths.get_filename_list("loras"),
                               default=EMBEDDED_LORA,
                               tooltip="The FaceID LoRA: the one embedded in the adapter file, or a separate "
                                       "ip-adapter-faceid_*_lora.safetensors from models/loras (same weights)"),
            ],
            outputs=[IDAdapter.Output(display_name="id_adapter")],
        )

    @classmethod
    def execute(cls, adapter, lora=EMBEDDED_LORA):
        path = model_path("ipadapter", adapter)
        lora_path = None if lora in (None, "", EMBEDDED_LORA) else model_path("loras", lora)
        return io.NodeOutput(load_id_adapter(path, lora_path))


def model_path(folder: str, name: str) -> str:
    """The file's full path, or an error naming the file, every folder searched and where to get it."""
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise faceid.FaceIDFileError(model_files.missing_file_message(name, folder,
                                                                      folder_paths.get_folder_paths(folder)))
    return path


class FaceAnonApplyIDAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FaceAnonApplyIDAdapter",
            display_name="Apply ID Adapter (FaceAnon)",
            category="FaceAnon/identity",
            description=("Patches a clone of the model with IP-Adapter FaceID: its LoRA (through ComfyUI's weight "
                         "patching) and an identity cross-attention on every transformer block. Every guidance "
                         "branch sees the null identity (the adapter's projection of the zero embedding) unless an "
                         "identity is given for it; the optional identity here is the positive branch's. The "
                         "FaceAnon guider sets per-branch identities itself."),
            inputs=[
                io.Model.Input("model"),
                IDAdapter.Input("id_adapter"),
                knob_input("adapter_weight", "weight"),
                knob_input("lora_strength"),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001),
                Identity.Input("identity", optional=True,
                               tooltip="Identity for the positive branch (cond index 0); the others get the null "
                                       "identity"),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, id_adapter, weight=1.0, lora_strength=1.0, start_percent=0.0, end_percent=1.0,
                identity=None):
        identities = None if identity is None else {0: identity_embeddings(identity)}
        return io.NodeOutput(apply_id_adapter(model, id_adapter, weight, lora_strength, start_percent, end_percent,
                                              identities))


NODES = [FaceAnonLoadIDAdapter, FaceAnonApplyIDAdapter]
