"""Random-weight models in the real SD1.5 / SDXL layouts, built by the tests (no weights are downloaded).

The module layouts come from ComfyUI's own classes, so the checkpoints written here have exactly the key names of a
real SD1.5 checkpoint (`model.diffusion_model.*`, `cond_stage_model.transformer.text_model.*`,
`first_stage_model.*`), and ComfyUI's real loader (CheckpointLoaderSimple) detects and loads them.

To stay fast on 2 CPU cores the UNet is *shallow*: full width (320 channels, context 768, so ComfyUI's detector
recognises SD1.5) but with two resolution levels and one block per level. The text encoder (CLIP-L) and the VAE
have their fixed real sizes (ComfyUI builds them from fixed configs); they are stored in fp16.

Import only after the host has booted (dev/host.py), since this imports `comfy`.
"""

from __future__ import annotations

import torch

SD15_SHALLOW_UNET = {
    "in_channels": 4, "out_channels": 4, "model_channels": 320, "num_res_blocks": [1, 1], "channel_mult": [1, 2],
    "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1], "transformer_depth_middle": 1,
    "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
    "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False,
    "use_spatial_transformer": True, "legacy": False, "image_size": 32, "use_checkpoint": False, "dims": 2,
    "use_temporal_resblock": False,
}

# The full SD1.5 UNet (4 levels, 2 blocks each, 860M parameters): the real per-call cost of a model evaluation.
SD15_FULL_UNET = dict(SD15_SHALLOW_UNET, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
                      transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_output=[1] * 9 + [0, 0, 0])

# Tiny (narrow) UNets for in-process unit tests (ComfyUI merges its own head config: SD1.5 8 heads, SDXL 64
# channels per head, so SDXL needs at least 64 channels) that build a ModelPatcher directly, without a checkpoint file.
SD15_TINY_UNET = dict(SD15_SHALLOW_UNET, model_channels=32, context_dim=64, num_heads=4)
SDXL_TINY_UNET = {
    "in_channels": 4, "out_channels": 4, "model_channels": 64, "num_res_blocks": [1, 1], "channel_mult": [1, 2],
    "transformer_depth": [1, 2], "transformer_depth_output": [1, 1, 2, 2], "transformer_depth_middle": 2,
    "context_dim": 64, "num_heads": -1, "num_head_channels": 16,
    "use_linear_in_transformer": True, "adm_in_channels": 2816, "num_classes": "sequential",
    "use_temporal_attention": False,
    "use_spatial_transformer": True, "legacy": False, "image_size": 32, "use_checkpoint": False, "dims": 2,
    "use_temporal_resblock": False,
}

SD_VAE_CONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                 "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def randomize_(state_dict: dict[str, torch.Tensor], seed: int, std: float = 0.02) -> dict[str, torch.Tensor]:
    """Fill a state dict with seeded random values: norms 1, biases 0, position ids arange, weights N(0, std)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, t in state_dict.items():
        if "position_ids" in k:
            out[k] = torch.arange(t.shape[-1]).expand(t.shape).clone().to(t.dtype)
        elif k.endswith("bias"):
            out[k] = torch.zeros(t.shape, dtype=t.dtype)
        elif "norm" in k and k.endswith("weight") or k.endswith("ln_1.weight") or k.endswith("ln_2.weight"):
            out[k] = torch.ones(t.shape, dtype=t.dtype)
        elif t.is_floating_point():
            fan_in = max(t[0].numel(), 1) if t.ndim > 1 and t.shape[0] > 0 else 1
            scale = std if t.ndim <= 1 else min(std, 1.0 / fan_in ** 0.5)
            out[k] = (torch.randn(t.shape, generator=g) * scale).to(t.dtype)
        else:
            out[k] = t.clone()
    return out


def build_model_patcher(unet_config: dict, family: str = "sd15", seed: int = 0, prediction: str = "eps",
                        device: torch.device | None = None, dtype: torch.dtype = torch.float32):
    """A random-weight ComfyUI ModelPatcher of the given family, without any file, on `device` (default CPU) in
    `dtype`."""
    device = torch.device("cpu") if device is None else torch.device(device)
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    config_cls = {"sd15": comfy.supported_models.SD15, "sdxl": comfy.supported_models.SDXL}[family]
    config = config_cls(dict(unet_config))
    model_type = {"eps": comfy.model_base.ModelType.EPS, "v": comfy.model_base.ModelType.V_PREDICTION}[prediction]
    base_cls = comfy.model_base.SDXL if family == "sdxl" else comfy.model_base.BaseModel
    model = base_cls(config, model_type=model_type, device=device)
    sd = randomize_(model.diffusion_model.state_dict(), seed)
    model.diffusion_model.load_state_dict(sd)
    model.diffusion_model.to(device=device, dtype=dtype)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def sd15_checkpoint_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random SD1.5-layout checkpoint (shallow UNet, real CLIP-L and VAE layouts), fp16."""
    import comfy.ldm.models.autoencoder
    import comfy.sd1_clip
    import comfy.supported_models

    model = comfy.supported_models.SD15(dict(SD15_SHALLOW_UNET)).get_model({})
    sd = {"model." + k: v for k, v in randomize_(model.diffusion_model.state_dict(), seed).items()}
    clip = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float16)
    for k, v in randomize_(clip.state_dict(), seed + 1).items():
        if k.startswith("clip_l.transformer."):
            sd["cond_stage_model." + k[len("clip_l."):]] = v
    vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(SD_VAE_CONFIG), embed_dim=4)
    sd.update({"first_stage_model." + k: v for k, v in randomize_(vae.state_dict(), seed + 2).items()})
    return {k: v.to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous() for k, v in sd.items()}


def write_sd15_checkpoint(path, seed: int = 0) -> None:
    import safetensors.torch

    safetensors.torch.save_file(sd15_checkpoint_state_dict(seed), str(path))
