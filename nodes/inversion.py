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
from ..faceanon.schedules import SPACING, inversion_sigmas
from .id_adapter import with_branch_identities
from .knobs import knob_input
from .types import Inversion, io

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvertedLatent:
    """What flows on a FACEANON_INVERSION socket: the core inversion plus what the host's sampler needs.

    `start_noise` is the NOISE that KSAMPLER's ``noise_scaling(sigmas[0], noise, latent)`` turns back into the
    inversion's start latent when `latent_image` is the LATENT that was inverted. `positive`, `negative` and `cfg` are
    the conditioning the inversion's predictions were made with (null identity in both branches): the identity
    guider's identity-free prediction uses exactly these.
    """

    core: edit_inversion.Inversion
    start_noise: torch.Tensor
    seed: int
    prediction: str
    positive: list | None = None
    negative: list | None = None
    cfg: float = 1.0


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


def schedule_sigmas(model, solver: str, steps: int, skip: float) -> torch.Tensor:
    """The model's sigmas at the timesteps of `solver`'s reference pipeline (faceanon.schedules)."""
    if solver not in SPACING:
        raise ValueError(f"solver must be one of {tuple(SPACING)}, got {solver!r}")
    return inversion_sigmas(model.get_model_object("model_sampling").sigmas, steps, skip, SPACING[solver])


def rows_per_call(model, latent_shape) -> int:
    """How many latent rows of `latent_shape` ([C, H, W]) one UNet call can carry in the memory that ComfyUI's
    model management reports free on the model's device (with the model's own weights counted as loaded, and the
    1.5x margin core sampling uses when it batches conds); at least 1."""
    mm = comfy.model_management
    free = mm.get_free_memory(model.load_device)
    free -= max(0, model.model_size() - model.loaded_size())  # weights still to be loaded
    per_row = 1.5 * model.model.memory_required([1, *latent_shape])
    return max(1, int(free // per_row)) if per_row > 0 else 1


def _per_row_safe(*conditionings) -> bool:
    """False when a conditioning is active on part of the schedule only (a timestep range) or carries hooks: core
    sampling decides those from the call's first sigma, so steps at other sigmas must not share the call."""
    for conditioning in conditionings:
        for _, options in conditioning or ():
            if options.get("hooks") is not None:
                return False
            if options.get("start_percent", 0.0) > 0.0 or options.get("end_percent", 1.0) < 1.0:
                return False
    return True


def invert_latent(model, positive, negative, latent: dict, solver: str, steps: int, skip: float, eta: float,
                  cfg: float, seed: int, *, seeds=None, steps_per_call: int = 0) -> InvertedLatent:
    """Run the inversion through ComfyUI's own sampling machinery (guider, conds, hooks, model loading).

    Row b of the latent batch draws its noisy latents from seed ``seeds[b]`` (default ``seed + b``), so each row's
    inversion equals the inversion of that latent alone with its seed. `steps_per_call` steps share one UNet call
    (every CFG branch and row included); 0 picks the most that fit in the free memory (`rows_per_call`), 1 is one
    call per step.
    """
    pred = prediction_type(model)
    model = null_identity_model(model)
    sigmas = schedule_sigmas(model, solver, steps, skip)
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    rows = samples.shape[0]
    seeds = [seed + b for b in range(rows)] if seeds is None else [int(s) for s in seeds]
    if len(seeds) != rows:
        raise ValueError(f"got {len(seeds)} seeds for a latent batch of {rows}: give one seed per latent")
    if int(steps_per_call) < 0:
        raise ValueError(f"steps_per_call must be 0 (from the free memory) or a number of steps >= 1, got "
                         f"{steps_per_call}")
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    branches = 1 if math.isclose(cfg, 1.0) else 2
    out: dict = {}
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]

    def run(denoiser, x, sigmas, extra_args=None, callback=None, disable=None):
        k = int(steps_per_call)
        if k == 0:  # the model is loaded by now: the free memory is what the calls can use
            fit = rows_per_call(model, x.shape[1:]) // (rows * branches)
            k = max(1, min(fit, len(sigmas) - 1)) if _per_row_safe(positive, negative) else 1
        out["steps_per_call"] = k
        out["inversion"] = edit_inversion.invert(denoiser, x, sigmas, extra_args, callback, disable, solver=solver,
                                                 eta=eta, generator=generators, steps_per_call=k)
        return out["inversion"].x_start.to(x.device, x.dtype)

    progress = latent_preview.prepare_callback(model, steps)

    def callback(step, x0, x, total):
        comfy.model_management.throw_exception_if_processing_interrupted()
        progress(step, x0, x, total)

    guider.sample(torch.zeros_like(samples), samples, comfy.samplers.KSAMPLER(run), sigmas, callback=callback,
                  disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    inv = out["inversion"]
    logger.debug("FaceAnon: inverted %d latent(s), %d steps, %d per UNet call", rows, steps, out["steps_per_call"])
    return InvertedLatent(core=inv, start_noise=_start_noise(model, samples, inv), seed=seed, prediction=pred,
                          positive=positive, negative=negative, cfg=float(cfg))


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


FINAL_STEP = {  # labels are saved in workflows: never rename them
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
                         "Computes exactly `steps` model evaluations per latent (x2 when cfg != 1), several steps "
                         "and every latent of a batch per UNet call."),
            inputs=[
                io.Model.Input("model", tooltip="The model exactly as sampling will use it (with the FaceAnon "
                                                "identity adapter applied, if any: inversion uses its null identity)."),
                io.Conditioning.Input("positive", tooltip="Inversion conditioning; use the sampling's text "
                                                          "(an empty prompt in both papers)."),
                io.Conditioning.Input("negative", tooltip="Inversion negative conditioning (used only when cfg != 1; "
                                                          "Reverse Personalization uses a zeroed prompt)."),
                io.Latent.Input("latent_image", tooltip="The encoded image(s) to invert (VAEEncode); a batch inverts "
                                                        "several faces at once, each with its own seed."),
                knob_input("solver"),
                knob_input("steps"),
                knob_input("skip"),
                knob_input("eta"),
                knob_input("inversion_cfg", "cfg", round=0.01),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the independent noisy latents of the inverted trajectory; latent b of "
                                     "a batch (several faces) uses seed + b."),
                knob_input("steps_per_call", optional=True),
            ],
            outputs=[Inversion.Output(display_name="inversion",
                                      tooltip="Start latent, noise maps and schedule; holds the original image, so "
                                              "it is never saved to disk.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, solver, steps, skip, eta, cfg, seed,
                steps_per_call=0) -> io.NodeOutput:
        inverted = invert_latent(model, positive, negative, latent_image, solver, steps, skip, eta, cfg, seed,
                                 steps_per_call=steps_per_call)
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
                               tooltip="The last step (to timestep 0). 'drop' zeroes its noise map and ends on "
                                       "the solver's own step, as NullFace does. 'keep' injects it, as Reverse "
                                       "Personalization does: the inversion lands exactly on the photo's latent "
                                       "(exact reconstruction), and the last step carries a faint copy of the "
                                       "original's finest detail."),
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
