"""Inversion and replay inside a real ComfyUI (in-process), on random-weight checkpoints written by the tests."""

import numpy as np
import pytest
import torch
from PIL import Image

from dev.host import HostRunError, ensure_tiny_sd15_checkpoint

PACK_NODES = {"FaceAnonInvert", "FaceAnonInversionNoise", "FaceAnonReplaySampler", "FaceAnonInversionSigmas"}


def test_pack_loads_through_comfyui_loader(host):
    assert host.pack_loaded, "ComfyUI's load_custom_node reported an import error for the pack (see the log)"
    assert PACK_NODES <= host.pack_node_ids
    for node_id in host.pack_node_ids:
        cls = host.nodes.NODE_CLASS_MAPPINGS[node_id]
        schema = cls.GET_SCHEMA()
        assert schema.node_id == cls.__name__ == node_id and node_id.startswith("FaceAnon")
        assert schema.category.startswith("FaceAnon/")


@pytest.fixture(scope="module")
def photo(host):
    """A structured 64x64 test picture in the host's input folder."""
    y, x = np.mgrid[0:64, 0:64] / 63.0
    img = np.stack([x, y, 0.5 + 0.4 * np.sin(6 * x * y * np.pi)], -1)
    img[20:44, 24:40] = [0.9, 0.7, 0.6]
    Image.fromarray((img * 255).astype(np.uint8)).save(host.input_dir / "faceanon_test.png")
    return "faceanon_test.png"


def graph(ckpt, photo, solver="ddpm", steps=6, skip=0.7, cfg=1.0, final_step="keep residual (exact reconstruction)",
          prediction=None, latent_src=("4", 0)):
    """LoadImage -> VAEEncode -> FaceAnonInvert -> SamplerCustomAdvanced(CFGGuider with the same conds) -> VAEDecode."""
    model = ["1", 0]
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "13": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["2", 0]}},
    }
    if prediction:
        g["14"] = {"class_type": prediction[0], "inputs": {"model": ["1", 0], **prediction[1]}}
        model = ["14", 0]
    g.update({
        "5": {"class_type": "FaceAnonInvert", "inputs": {
            "model": model, "positive": ["2", 0], "negative": ["13", 0], "latent_image": ["4", 0], "solver": solver,
            "steps": steps, "skip": skip, "eta": 1.0, "cfg": cfg, "seed": 7}},
        "6": {"class_type": "FaceAnonInversionNoise", "inputs": {"inversion": ["5", 0]}},
        "7": {"class_type": "FaceAnonReplaySampler", "inputs": {"inversion": ["5", 0], "final_step": final_step}},
        "8": {"class_type": "FaceAnonInversionSigmas", "inputs": {"inversion": ["5", 0]}},
        "9": {"class_type": "CFGGuider", "inputs": {"model": model, "positive": ["2", 0], "negative": ["13", 0],
                                                    "cfg": cfg}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["6", 0], "guider": ["9", 0], "sampler": ["7", 0], "sigmas": ["8", 0],
            "latent_image": list(latent_src)}},
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}},
        "15": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
        "16": {"class_type": "PreviewImage", "inputs": {"images": ["15", 0]}},
    })
    return g


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("solver,cfg", [("ddpm", 1.0), ("dpmpp_2m_sde", 4.0)])
def test_graph_reconstructs_the_input(host, photo, solver, cfg):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    out = host.run(graph(ckpt, photo, solver=solver, cfg=cfg))
    latent_in, latent_out = out["4"][0]["samples"], out["10"][0]["samples"]
    assert rel(latent_out, latent_in) < 1e-4
    # the decoded image equals the plain VAE round trip of the photo
    assert float((out["11"][0] - out["15"][0]).abs().max()) < 2e-3


def test_dropping_the_final_residual_differs_only_by_it(host, photo):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    out = host.run(graph(ckpt, photo, final_step="drop residual (anonymize)"))
    inv = out["5"][0]
    latent_in, latent_out = out["4"][0]["samples"], out["10"][0]["samples"]
    assert rel(latent_out, latent_in) > 1e-3  # a random model's last denoise is far from exact
    # final_residual lives in the model's latent space (x SD1.5 scale factor); compare there
    scale = 0.18215
    assert rel(latent_out * scale + inv.core.final_residual, latent_in * scale) < 1e-4


def test_v_prediction_reconstructs(host, photo):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    pred = ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False})
    out = host.run(graph(ckpt, photo, prediction=pred))
    assert out["5"][0].prediction == "v_prediction"
    assert rel(out["10"][0]["samples"], out["4"][0]["samples"]) < 1e-4


def test_one_inversion_serves_many_samplings(host, photo):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    executor = host.new_executor()
    first = host.run(graph(ckpt, photo, final_step="drop residual (anonymize)"), executor)
    second = host.run(graph(ckpt, photo, final_step="keep residual (exact reconstruction)"), executor)
    cached = host.cached_nodes(executor)
    assert "5" in cached and "7" not in cached and "10" not in cached
    assert first["5"][0] is second["5"][0]
    assert not torch.equal(first["10"][0]["samples"], second["10"][0]["samples"])


def test_flow_models_are_refused(host, photo):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    pred = ("ModelSamplingSD3", {"shift": 3.0})
    with pytest.raises(HostRunError, match="flow-matching model"):
        host.run(graph(ckpt, photo, prediction=pred))


def test_latent_of_another_shape_is_a_clear_error(host, photo):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    g = graph(ckpt, photo, latent_src=("20", 0))
    g["20"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 64, "batch_size": 1}}
    with pytest.raises(HostRunError, match=r"latent_image has shape \(1, 4, 8, 16\) but the inversion was made from a "
                                           r"latent of shape \(1, 4, 8, 8\)"):
        host.run(g)


def test_steps_out_of_range_for_skip(host, photo):
    ckpt = ensure_tiny_sd15_checkpoint(host)
    with pytest.raises(HostRunError, match=r"steps=50 is out of range for skip=0.99: allowed 1..10"):
        host.run(graph(ckpt, photo, steps=50, skip=0.99))


def test_progress_and_interruption(host, photo):
    import comfy.model_management
    import comfy.utils

    ckpt = ensure_tiny_sd15_checkpoint(host)
    ticks = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None, prompt_id=None:
                                             ticks.append((node_id, value, total)))
    try:
        host.run(graph(ckpt, photo, steps=5, skip=0.5))
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    # five inversion steps (FaceAnonInvert), then five replay steps (SamplerCustomAdvanced)
    assert [(v, total) for _, v, total in ticks] == [(i, 5) for i in range(1, 6)] * 2

    # Interrupt from inside the inversion (PromptExecutor clears the flag when a prompt starts).
    def interrupt_at_second_step(value, total, preview, node_id=None, prompt_id=None):
        ticks.append(value)
        if value == 2:
            comfy.model_management.interrupt_current_processing(True)

    ticks.clear()
    comfy.utils.set_progress_bar_global_hook(interrupt_at_second_step)
    try:
        with pytest.raises(HostRunError, match="execution_interrupted"):
            host.run(graph(ckpt, photo, steps=4, skip=0.45))
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        comfy.model_management.interrupt_current_processing(False)
    assert ticks == [1, 2]  # stopped right after the step that raised the flag


def _tiny_cond(family, batch=1):
    if family == "sdxl":
        return [[torch.randn(batch, 77, 64, generator=torch.Generator().manual_seed(1)),
                 {"pooled_output": torch.zeros(batch, 1280), "width": 64, "height": 64}]]
    return [[torch.randn(batch, 77, 64, generator=torch.Generator().manual_seed(1)), {}]]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("solver", ["ddpm", "dpmpp_2m_sde"])
def test_tiny_unets_in_both_layouts_reconstruct(host, family, solver):
    """Random-weight SD1.5- and SDXL-layout UNets (narrow), driven through ComfyUI's guider and KSAMPLER."""
    import comfy.samplers

    from dev.tiny_models import SD15_TINY_UNET, SDXL_TINY_UNET, build_model_patcher

    inv_nodes = host.pack("nodes.inversion")
    model = build_model_patcher(SDXL_TINY_UNET if family == "sdxl" else SD15_TINY_UNET, family)
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond, neg = _tiny_cond(family, 1), _tiny_cond(family, 1)
    inverted = inv_nodes.invert_latent(model, cond, neg, {"samples": lat}, solver, 8, 0.6, 1.0, 3.0, 1)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(cond, neg)
    guider.set_cfg(3.0)
    noise = inv_nodes.InversionNoise(inverted).generate_noise({"samples": lat})
    out = guider.sample(noise, lat, inv_nodes.replay_sampler(inverted, True), inverted.core.sigmas)
    assert rel(out, lat) < 1e-4


@pytest.mark.parametrize("solver,kdiff", [("ddpm", "sample_euler_ancestral"), ("dpmpp_2m_sde", "sample_dpmpp_2m_sde")])
def test_replay_equals_comfyui_samplers_fed_the_same_noise(host, solver, kdiff):
    """Our solver steps agree with ComfyUI's own k-diffusion samplers given the stored noise maps."""
    import comfy.k_diffusion.sampling as ks
    import comfy.samplers

    from dev.tiny_models import SD15_TINY_UNET, build_model_patcher

    inv_nodes = host.pack("nodes.inversion")
    model = build_model_patcher(SD15_TINY_UNET, "sd15", seed=3)
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    cond = _tiny_cond("sd15")
    inverted = inv_nodes.invert_latent(model, cond, cond, {"samples": lat}, solver, 6, 0.5, 1.0, 1.0, 4)
    sig = inverted.core.sigmas
    noises = inverted.core.noises

    def noise_sampler(sigma, sigma_next):
        i = int(torch.argmin((sig - float(sigma)).abs()))
        return noises[i]

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(cond, cond)
    guider.set_cfg(1.0)
    noise = inv_nodes.InversionNoise(inverted).generate_noise({"samples": lat})
    ours = guider.sample(noise, lat, inv_nodes.replay_sampler(inverted, False), sig)
    theirs_sampler = comfy.samplers.KSAMPLER(getattr(ks, kdiff), extra_options={"eta": 1.0,
                                                                                 "noise_sampler": noise_sampler})
    theirs = guider.sample(noise, lat, theirs_sampler, sig)
    assert rel(ours, theirs) < 1e-4
