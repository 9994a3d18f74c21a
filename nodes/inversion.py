"""Inversion nodes: FaceAnonInvert and the three nodes that feed core SamplerCustomAdvanced from its result.

Wiring: VAEEncode -> FaceAnonInvert -> {FaceAnonInversionNoise (NOISE), FaceAnonReplaySampler (SAMPLER),
FaceAnonInversionSigmas (SIGMAS)} -> SamplerCustomAdvanced(latent_image = the same encoded LATENT), with any
GUIDER. The nodes are pure, so ComfyUI's cache reuses one inversion for any number of samplings.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from ..faceanon import inversion as edit_inversion
from ..faceanon.schedules import inversion_sigmas
from .id_adapter import with_branch_identities
from .knobs import knob_input
from .types import Inversion, io

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvertedLatent:
    """What flows on a FACEANON_INVERSION socket: the core inversion plus what the host's sampler needs.

    `start_noise` is the NOISE that KSAMPLER's ``noise_scaling(sigmas[0], noise, latent)`` turns back into the
    inversion's start latent when `latent_image` is the LATENT that was inverted.
    """

    core: edit_inversion.Inversion
    start_noise: torch.Tensor
    seed: int
    prediction: str


def null_identity_model(model):
    """A clone of `model` on which every guidance branch sees the null identity (the inversion's conditioning).

    This is the hook the identity adapter relies on: a model patched with FaceAnonApplyIDAdapter reads
    ``transformer_options["faceanon_identity"]`` (set by `with_branch_identities`), and an empty map means the
    null identity (the projection of the zero embedding) everywhere. On an unpatched model the key is ignored.
    """
    m = model.clone()
    m.model_options = with_branch_identities(m.model_options, {})
    return m


def prediction_type(model) -> str:
    """The model's parametrisation; flow-matching models are refused with a clear error."""
    ms = model.get_model_object("model_sampling")
    if isinstance(ms, comfy.model_sampling.CONST):
        raise ValueError(
            f"FaceAnon inversion supports diffusion models with EPS or V-prediction (SD1.5, SD2, SDXL); this model "
            f"({type(model.model).__name__}) is a flow-matching model ({type(ms).__name__}), which is out of scope. "
            f"Use an SD1.5 or SDXL checkpoint.")
    if isinstance(ms, comfy.model_sampling.V_PREDICTION):
        return "v_prediction"
    if isinstance(ms, comfy.model_sampling.EPS):
        return "eps"
    raise ValueError(f"unsupported model sampling {type(ms).__name__}: FaceAnon supports EPS and V-prediction models")


def _start_noise(model, latent: torch.Tensor, inv: edit_inversion.Inversion) -> torch.Tensor:
    """NOISE such that KSAMPLER's noise_scaling(sigmas[0], noise, process_latent_in(latent)) == inv.x_start."""
    ms = model.get_model_object("model_sampling")
    sigma0 = float(inv.sigmas[0])
    max_sigma = float(ms.sigma_max)
    max_denoise = math.isclose(max_sigma, sigma0, rel_tol=1e-05) or sigma0 > max_sigma  # KSAMPLER.max_denoise
    scale = math.sqrt(1.0 + sigma0 ** 2) if max_denoise else sigma0
    return ((inv.x_start - inv.x0) / scale).to(latent.dtype)


def invert_latent(model, positive, negative, latent: dict, solver: str, steps: int, skip: float, eta: float,
                  cfg: float, seed: int) -> InvertedLatent:
    """Run the inversion through ComfyUI's own sampling machinery (guider, conds, hooks, model loading)."""
    pred = prediction_type(model)
    model = null_identity_model(model)
    ms = model.get_model_object("model_sampling")
    sigmas = inversion_sigmas(ms.sigmas, steps, skip)
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    out: dict = {}
    generator = torch.Generator("cpu").manual_seed(seed)

    def run(denoiser, x, sigmas, extra_args=None, callback=None, disable=None):
        out["inversion"] = edit_inversion.invert(denoiser, x, sigmas, extra_args, callback, disable, solver=solver,
                                                 eta=eta, generator=generator)
        return out["inversion"].x_start.to(x.device, x.dtype)

    progress = latent_preview.prepare_callback(model, steps)

    def callback(step, x0, x, total):
        comfy.model_management.throw_exception_if_processing_interrupted()
        progress(step, x0, x, total)

    guider.sample(torch.zeros_like(samples), samples, comfy.samplers.KSAMPLER(run), sigmas, callback=callback,
                  disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    inv = out["inversion"]
    return InvertedLatent(core=inv, start_noise=_start_noise(model, samples, inv), seed=seed, prediction=pred)


class InversionNoise:
    """NOISE protocol (``seed`` + ``generate_noise``): the inversion's start latent, expressed as noise."""

    def __init__(self, inverted: InvertedLatent):
        self.inverted = inverted
        self.seed = inverted.seed

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        expected = tuple(self.inverted.start_noise.shape)
        if tuple(samples.shape) != expected:
            raise ValueError(f"SamplerCustomAdvanced's latent_image has shape {tuple(samples.shape)} but the "
                             f"inversion was made from a latent of shape {expected}: wire the same LATENT into "
                             f"FaceAnonInvert and into latent_image")
        return self.inverted.start_noise.clone()


def replay_sampler(inverted: InvertedLatent, keep_final_residual: bool) -> comfy.samplers.KSAMPLER:
    """A SAMPLER that replays the inversion's noise maps with whatever guider it is given."""
    return comfy.samplers.KSAMPLER(edit_inversion.sample_replay, extra_options={
                  "inversion": inverted.core, "keep_final_residual": keep_final_residual})


FINAL_STEP = {
    "drop residual (anonymize)": False,
    "keep residual (exact reconstruction)": True,
}


class FaceAnonInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FaceAnonInvert",
            display_name="Invert Latent (FaceAnon)",
            category="FaceAnon/inversion",
            description=("Edit-friendly inversion: maps the latent back to noise along the schedule, keeping every "
                         "step's noise map, so that replaying them reproduces the image and only what the guidance "
                         "changes (the identity) moves. Runs on the model with the null identity in every branch. "
                         "Computes exactly `steps` model evaluations (x2 when cfg != 1)."),
            inputs=[
                io.Model.Input("model", tooltip="The model exactly as sampling will use it (with the FaceAnon "
                                                "identity adapter applied, if any: inversion uses its null identity)."),
                io.Conditioning.Input("positive", tooltip="Inversion conditioning; use the sampling's text "
                                                          "(an empty prompt in both papers)."),
                io.Conditioning.Input("negative", tooltip="Inversion negative conditioning (used only when cfg != 1; "
                                                          "Reverse Personalization uses a zeroed prompt)."),
                io.Latent.Input("latent_image", tooltip="The encoded image to invert (VAEEncode)."),
                knob_input("solver"),
                knob_input("steps"),
                knob_input("skip"),
                knob_input("eta"),
                knob_input("inversion_cfg", "cfg", round=0.01),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the independent noisy latents of the inverted trajectory."),
            ],
            outputs=[Inversion.Output(display_name="inversion",
                                      tooltip="Start latent, noise maps and schedule; holds the original image, so "
                                              "it is never saved to disk.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, solver, steps, skip, eta, cfg, seed) -> io.NodeOutput:
        inverted = invert_latent(model, positive, negative, latent_image, solver, steps, skip, eta, cfg, seed)
        return io.NodeOutput(inverted)


class FaceAnonInversionNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FaceAnonInversionNoise",
            display_name="Inversion Noise (FaceAnon)",
            category="FaceAnon/inversion",
            description="The inversion's start latent as the NOISE input of SamplerCustomAdvanced. Wire the same "
                        "LATENT that was inverted into SamplerCustomAdvanced's latent_image.",
            inputs=[Inversion.Input("inversion")],
            outputs=[io.Noise.Output()],
        )

    @classmethod
    def execute(cls, inversion) -> io.NodeOutput:
        return io.NodeOutput(InversionNoise(inversion))


class FaceAnonReplaySampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FaceAnonReplaySampler",
            display_name="Replay Sampler (FaceAnon)",
            category="FaceAnon/inversion",
            description="A SAMPLER that replays the inversion's noise maps (same solver, multistep history reset). "
                        "With the inversion's own conditioning it reproduces the image.",
            inputs=[
                Inversion.Input("inversion"),
                io.Combo.Input("final_step", options=list(FINAL_STEP), default="drop residual (anonymize)",
                               tooltip="The last step goes to sigma 0 and has no noise map. 'drop' ends on the "
                                       "model's own denoise (the papers; right for anonymization: the residual is a "
                                       "faint copy of the original's finest detail). 'keep' adds the inversion's "
                                       "residual back: exact reconstruction."),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, inversion, final_step) -> io.NodeOutput:
        return io.NodeOutput(replay_sampler(inversion, FINAL_STEP[final_step]))


class FaceAnonInversionSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FaceAnonInversionSigmas",
            display_name="Inversion Sigmas (FaceAnon)",
            category="FaceAnon/inversion",
            description="The inversion's schedule, for SamplerCustomAdvanced's sigmas.",
            inputs=[Inversion.Input("inversion")],
            outputs=[io.Sigmas.Output()],
        )

    @classmethod
    def execute(cls, inversion) -> io.NodeOutput:
        return io.NodeOutput(inversion.core.sigmas.clone())


NODES = [FaceAnonInvert, FaceAnonInversionNoise, FaceAnonReplaySampler, FaceAnonInversionSigmas]
