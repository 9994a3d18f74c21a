"""IP-Adapter FaceID, host-independent (no ComfyUI import; the ComfyUI side is nodes/id_adapter.py).

One module per job, every public name re-exported here:

* `files`: reading a FaceID file safely (safetensors, or ``torch.load(weights_only=True)``) and checking it
  completely: variant, base-model family, token count, cross-attention dim, processor count, LoRA rank, with errors
  that name the file;
* `lora`: separate LoRA files (low-rank up/down pairs);
* `layers`: the map from the file's attention-processor indices to the UNet's attention layers, and the check that
  a file fits a model;
* `modules`: the FaceID projection (Linear 512->1024, GELU, Linear 1024->T*C, LayerNorm C), the module that holds
  it with the per-layer ``to_k_ip`` / ``to_v_ip`` weights, and the decoupled cross-attention term
  ``softmax(q k_ip^T / sqrt(d)) v_ip`` as a pure function;
* `tokens`: the branch contract's token assembly, per cond index (ComfyUI's ``cond_or_uncond``) and per batch
  element, with the null identity (the projection of the ZERO embedding, learned non-zero tokens) wherever no
  identity is given.
"""

from .errors import FaceIDFileError, FaceIDMismatchError
from .files import (
    ID_DIM,
    LORA_PROJECTIONS,
    PROJ_HIDDEN,
    FaceIDInfo,
    FaceIDWeights,
    faceid_from_state_dict,
    inspect_faceid,
    load_faceid_file,
    read_state_dict,
    split_faceid_state_dict,
)
from .layers import (
    FACEID_FILE_FOR,
    KNOWN_LAYOUTS,
    AttentionLayer,
    check_compatible,
    describe_layout,
    embedded_lora_targets,
    layout_family,
    layout_from_shapes,
    processor_lora_targets,
)
from .lora import LoraPair, processor_lora_pairs, split_lora_pairs
from .modules import (
    CastWeights,
    FaceIDAdapterModule,
    FaceIDProjection,
    decoupled_attention,
    ip_attention_term,
    percent_window_active,
)
from .tokens import BranchIdentities, IdentityProjector, as_embeddings

__all__ = [
    "FACEID_FILE_FOR", "ID_DIM", "KNOWN_LAYOUTS", "LORA_PROJECTIONS", "PROJ_HIDDEN",
    "AttentionLayer", "BranchIdentities", "CastWeights", "FaceIDAdapterModule", "FaceIDFileError", "FaceIDInfo",
    "FaceIDMismatchError", "FaceIDProjection", "FaceIDWeights", "IdentityProjector", "LoraPair",
    "as_embeddings", "check_compatible", "decoupled_attention", "describe_layout", "embedded_lora_targets",
    "faceid_from_state_dict", "inspect_faceid", "ip_attention_term", "layout_family", "layout_from_shapes",
    "load_faceid_file", "percent_window_active", "processor_lora_pairs", "processor_lora_targets", "read_state_dict",
    "split_faceid_state_dict", "split_lora_pairs",
]
