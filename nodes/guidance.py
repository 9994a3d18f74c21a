"""FaceAnonIdentityGuider (negative-identity CFG with optional mask gate) and FaceAnonAttributePrompt.

Branch contract with nodes/id_adapter.py: the guider calls ``calc_cond_batch`` with the conds in this order

    0: positive text + the person's (scaled / negated) identity      <- the only branch with an identity
    1: unconditional text (attribute prompt, else negative) + null identity
    2, 3: the identity-free prediction's texts + null identity, while the mask gate is active and only where they
       differ from branch 1 (faceanon.branches.branch_plan)

and tells the adapter ``faceanon_identity = {0: identity}``; every other index gets the null identity.

The identity-free prediction (outside the mask gate) is the inversion's own: its positive and negative texts combined
at its guidance scale. A guider given the inversion (FaceAnonInvert's output) takes them from it; without one it
assumes the inversion used the guider's own texts and cfg.
"""

from __future__ import annotations

import logging

import comfy.samplers
import nodes as comfy_nodes  # ComfyUI's nodes.py (this pack's folder is imported relatively)
import torch

from ..faceanon import guidance as guidance_math
from ..faceanon.branches import Branch, Outside, branch_plan
from ..faceanon.guidance import cfg_mismatch
from ..faceanon.prompts import ETHNICITIES, SEXES, attribute_prompt
from .id_adapter import branch_identities, identity_embeddings, with_branch_identities
from .knobs import knob_input
from .types import Identity, Inversion, io

logger = logging.getLogger(__name__)


def _same_conditioning(a, b) -> bool:
    """True when two CONDITIONING values encode the same text (same tensors and pooled outputs)."""
    if a is b:
        return True
    if a is None or b is None or len(a) != len(b):
        return False
    for (ta, da), (tb, db) in zip(a, b, strict=True):
        if ta.shape != tb.shape or not torch.equal(ta, tb):
            return False
        pa, pb = da.get("pooled_output"), db.get("pooled_output")
        if (pa is None) != (pb is None) or (pa is not None and (pa.shape != pb.shape or not torch.equal(pa, pb))):
            return False
    return True


class IdentityGuider(comfy.samplers.CFGGuider):
    """CFG between (positive text + identity) and (unconditional text + null identity), scale may be negative."""

    def set_conds(self, positive, negative, attribute=None, free=None):
        """`free`: the identity-free prediction's (positive, negative) texts, i.e. the inversion's; default these."""
        conds = {"positive": positive, "negative": negative}
        if attribute is not None:
            conds["attribute"] = attribute
        free_positive, free_negative = free or (positive, negative)
        uncond = attribute if attribute is not None else negative
        self.free_flags = (_same_conditioning(free_positive, uncond), _same_conditioning(free_negative, uncond),
                           _same_conditioning(free_positive, free_negative))
        # the conds key of each identity-free text: the guider's own where it is the same object
        self.free_keys = {}
        for key, text, own in (("free_positive", free_positive, "positive"), ("free_negative", free_negative,
                                                                            "negative")):
            if text is not conds[own]:
                conds[key] = text
            self.free_keys[key] = key if text is not conds[own] else own
        self.inner_set_conds(conds)

    def set_identity_free_cfg(self, cfg: float | None):
        """The identity-free prediction's guidance scale (the inversion's); None: the guider's own cfg."""
        self.free_cfg = cfg

    def set_identity(self, embeddings: torch.Tensor, identity_scale: float):
        self.identity = guidance_math.branch_identity(embeddings, identity_scale)
        # made once: every step passes the same value, so the adapter projects the identity once per run
        self.identities = branch_identities({0: self.identity})

    def set_mask(self, mask: torch.Tensor | None, delay: int = 0, feather: float = 0.0):
        self.mask, self.mask_delay, self.mask_feather = mask, int(delay), float(feather)
        self._latent_mask = {}

    def latent_mask(self, shape) -> torch.Tensor:
        key = tuple(shape[-2:])
        if key not in self._latent_mask:
            self._latent_mask[key] = guidance_math.mask_to_latent(self.mask, key, self.mask_feather,
                                                                  threshold=None if self.mask_feather > 0 else 0.5)
        return self._latent_mask[key]

    def predict_noise(self, x, timestep, model_options=None, seed=None):
        model_options = {} if model_options is None else model_options
        positive, negative = self.conds.get("positive"), self.conds.get("negative")
        attribute = self.conds.get("attribute")
        uncond = attribute if attribute is not None else negative
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        gated = (getattr(self, "mask", None) is not None
                 and guidance_math.step_index(timestep[0], sigmas) >= self.mask_delay)
        # The identity-free prediction used outside the mask: the inversion's texts and scale with the null
        # identity. Extra branches only where its texts differ from the ones already computed.
        plan = branch_plan(gated, *self.free_flags)
        texts = {Branch.IDENTITY: positive, Branch.UNCOND: uncond,
                 Branch.NULL_POSITIVE: self.conds.get(self.free_keys["free_positive"]),
                 Branch.NULL_NEGATIVE: self.conds.get(self.free_keys["free_negative"])}
        conds = [texts[b] for b in plan.branches]
        mo = with_branch_identities(model_options, self.identities)
        out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, mo)
        # Replay core's pre-CFG hooks on the two guidance branches, as Guider_PerpNeg does, so that other
        # patches keep working; cfg_function applies sampler_cfg_function and the post-CFG hooks.
        for fn in model_options.get("sampler_pre_cfg_function", []):
            out[:2] = fn({"conds": conds[:2], "conds_out": out[:2], "cond_scale": self.cfg, "timestep": timestep,
                          "input": x, "sigma": timestep, "model": self.inner_model, "model_options": mo})
        guided = comfy.samplers.cfg_function(self.inner_model, out[0], out[1], self.cfg, x, timestep,
                                             model_options=mo, cond=positive, uncond=uncond)
        if plan.outside is Outside.NOT_GATED:
            return guided
        if plan.outside is Outside.UNCOND:
            outside = out[1]  # the identity-free texts are the unconditional one: the null branch itself
        elif plan.outside is Outside.NULL_POSITIVE:
            outside = out[2]  # CFG between two equal predictions is either of them
        else:
            free_cfg = self.cfg if getattr(self, "free_cfg", None) is None else self.free_cfg
            outside = comfy.samplers.cfg_function(
                self.inner_model, out[plan.source(Branch.NULL_POSITIVE)], out[plan.source(Branch.NULL_NEGATIVE)],
                free_cfg, x, timestep, model_options=mo, cond=texts[Branch.NULL_POSITIVE],
                uncond=texts[Branch.NULL_NEGATIVE])
        return guidance_math.gate(guided, outside, self.latent_mask(x.shape))


def identity_guider(model, positive, negative, identity, identity_scale: float, cfg: float, attribute=None,
                    mask=None, mask_delay: int = 0, mask_feather: float = 0.0, inversion=None) -> IdentityGuider:
    """The guider; `inversion` (an InvertedLatent) gives the identity-free prediction's texts and scale."""
    guider = IdentityGuider(model)
    free = None if inversion is None or inversion.positive is None else (inversion.positive, inversion.negative)
    guider.set_conds(positive, negative, attribute, free)
    guider.set_cfg(cfg)
    guider.set_identity_free_cfg(None if inversion is None else inversion.cfg)
    guider.set_identity(identity_embeddings(identity), identity_scale)
    guider.set_mask(mask, mask_delay, mask_feather)
    return guider


def inversion_mismatch(inversion, positive, negative, cfg: float) -> str | None:
    """What sampling with these texts and `cfg` breaks against the inversion's (None: nothing, or no inversion).

    The guided prediction with the null identity equals the inversion's when both use the same texts and either the
    same scale or two equal texts (an attribute prompt is a wanted change and is not checked here).
    """
    if inversion is None or inversion.positive is None:
        return None
    if not (_same_conditioning(positive, inversion.positive) and _same_conditioning(negative, inversion.negative)):
        return ("the guider's positive/negative texts are not the ones the inversion used: the image drifts from "
                "the photo beyond the identity and identity_scale 0 no longer reconstructs it; wire the same "
                "CONDITIONING into FaceAnonInvert and the guider (use attribute_prompt to change the unconditional "
                "text on purpose)")
    return cfg_mismatch(cfg, inversion.cfg, texts_differ=not _same_conditioning(positive, negative))


class FaceAnonIdentityGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FaceAnonIdentityGuider",
            display_name="Identity Guider (FaceAnon)",
            category="FaceAnon/guidance",
            description=(
                "Guidance that pushes away from a person's identity: pred = uncond + cfg * (cond - uncond), where "
                "cond = positive text + identity_scale x ArcFace embedding and uncond = negative text (or the "
                "attribute prompt) + the null identity. NullFace: identity_scale -1, cfg 10. Reverse "
                "Personalization: identity_scale 1, cfg -10. Needs a model patched by FaceAnonApplyIDAdapter. Use "
                "with the FaceAnon replay sampler, noise and sigmas in SamplerCustomAdvanced."),
            inputs=[
                io.Model.Input("model", tooltip="The model patched with the FaceID adapter (the same one inverted)."),
                io.Conditioning.Input("positive", tooltip="Text of the conditional branch (an empty prompt in both "
                                                          "papers)."),
                io.Conditioning.Input("negative", tooltip="Text of the unconditional branch, as used by the inversion "
                                                          "(the empty prompt for NullFace, a zeroed one for Reverse "
                                                          "Personalization)."),
                Identity.Input("identity", tooltip="The ArcFace identity to move away from (one row, or one per "
                                                   "latent in the batch)."),
                knob_input("identity_scale"),
                knob_input("cfg", round=0.01),
                io.Conditioning.Input("attribute_prompt", optional=True,
                                      tooltip="Replaces the unconditional text during sampling only (never during "
                                              "inversion): describe the attributes to keep or get (age, sex, "
                                              "ethnicity). Meaningful with a negative cfg."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Where the identity may change (1 = change, 0 = keep), in the sampled image's "
                                      "pixels. Outside it the prediction follows the inversion's (identity-free) "
                                      "trajectory."),
                knob_input("mask_delay"),
                knob_input("mask_feather"),
                Inversion.Input("inversion", optional=True,
                                tooltip="The inversion this guider samples (FaceAnonInvert). Outside the mask the "
                                        "prediction is then exactly the inversion's (its texts and its cfg), and a "
                                        "cfg or texts that break the reconstruction are logged as a warning. "
                                        "Without it the inversion is assumed to have used this guider's texts and "
                                        "cfg."),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, model, positive, negative, identity, identity_scale, cfg, attribute_prompt=None, mask=None,
                mask_delay=10, mask_feather=0.0, inversion=None) -> io.NodeOutput:
        problem = inversion_mismatch(inversion, positive, negative, cfg)
        if problem:
            logger.warning("FaceAnonIdentityGuider: %s", problem)
        return io.NodeOutput(identity_guider(model, positive, negative, identity, identity_scale, cfg,
                                             attribute_prompt, mask, mask_delay, mask_feather, inversion))


def is_sdxl_clip(clip) -> bool:
    return hasattr(clip.cond_stage_model, "clip_g")


def encode_prompt(clip, text: str, zero_if_empty: bool | None = None):
    """CONDITIONING for `text`; an empty prompt on SDXL is the zero embedding (force_zeros_for_empty_prompt)."""
    tokens = clip.tokenize(text)
    cond = clip.encode_from_tokens_scheduled(tokens)
    zero = is_sdxl_clip(clip) if zero_if_empty is None else zero_if_empty
    if text.strip() == "" and zero:
        cond = zero_out(cond)
    return cond


def zero_out(conditioning):
    """Core ConditioningZeroOut (zero text embeddings and pooled outputs; a new list, the input untouched)."""
    return comfy_nodes.ConditioningZeroOut().zero_out(conditioning)[0]


class FaceAnonAttributePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FaceAnonAttributePrompt",
            display_name="Attribute Prompt (FaceAnon)",
            category="FaceAnon/guidance",
            description=("Age, sex, ethnicity and free text composed into '{age}-year-old {ethnicity} {man/woman...}, "
                         "{text}' and encoded with the model's CLIP. Wire it into the guider's attribute_prompt: it "
                         "replaces the unconditional text during sampling only. All defaults = empty prompt (the "
                         "zero embedding on SDXL)."),
            inputs=[
                io.Clip.Input("clip"),
                io.Int.Input("age", default=0, min=0, max=120, tooltip="Years; 0 leaves the age unspecified."),
                io.Combo.Input("sex", options=list(SEXES), default="any"),
                io.Combo.Input("ethnicity", options=list(ETHNICITIES), default="any"),
                io.String.Input("text", default="", multiline=True, tooltip="Free text appended to the prompt."),
            ],
            outputs=[io.Conditioning.Output(display_name="attribute_prompt"),
                     io.String.Output(display_name="prompt", tooltip="The composed prompt text.")],
        )

    @classmethod
    def execute(cls, clip, age, sex, ethnicity, text) -> io.NodeOutput:
        prompt = attribute_prompt(age, sex, ethnicity, text)
        return io.NodeOutput(encode_prompt(clip, prompt), prompt)


NODES = [FaceAnonIdentityGuider, FaceAnonAttributePrompt]
