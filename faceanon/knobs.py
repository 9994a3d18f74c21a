"""Every knob of the method, declared once: type, range, default and tooltip.

The presets' override parser (`faceanon.presets.apply_overrides`) checks ``key = value`` lines against this table,
and the node schemas (`nodes/knobs.py`) build their widgets from it, so a range, default or tooltip cannot disagree
between the two. Defaults are the NullFace (SD1.5) values, which is what a freshly placed modular node shows.

Where the overrides and the widgets used to disagree, the table keeps the wider range, so that no value accepted
before (in a saved workflow or an override text) is refused now: adapter_weight -2..3, lora_strength -2..3,
margin 0.5..4, resolution 64..4096.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .inversion import SOLVERS

__all__ = ["Knob", "KNOBS", "knob"]


@dataclass(frozen=True)
class Knob:
    """One knob: `kind` (bool, int, float or str), `default`, `tooltip`, and either a closed range
    [`low`, `high`] (numbers, `step` for the widget) or `choices` (strings)."""

    kind: type
    default: bool | int | float | str
    tooltip: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, name: str, value):
        """`value` if it is of this knob's kind and within its range or choices; else ValueError naming both."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{name} = {value!r}: expected true or false")
            return value
        if self.kind is str:
            if value not in self.choices:
                raise ValueError(f"{name} = {value!r}: allowed values are {', '.join(self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} = {value!r}: expected a {self.kind.__name__}")
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(f"{name} = {value}: allowed range is {self.low:g} to {self.high:g}")
        return self.kind(value)


SOLVER_TOOLTIP = ("ddpm: edit-friendly DDPM inversion (NullFace). dpmpp_2m_sde: edit-friendly DPM-Solver++ 2M SDE "
                  "inversion (Reverse Personalization / LEDITS++). Replay uses the same solver.")
SKIP_TOOLTIP = ("Fraction of the schedule left untouched; higher keeps more of the photo. Each solver uses its "
                "paper's timesteps. ddpm (NullFace): a round(steps/(1-skip))-step DDIM 'leading' schedule of which "
                "the last `steps` are run: skip 0.70 with steps 30 is NullFace's '100 steps, T_skip 70' (timesteps "
                "291, 281, ..., 1). dpmpp_2m_sde (Reverse Personalization): `steps` steps from timestep "
                "round((1-skip)*1000)-1 down to 1 (skip 0.70, steps 100: 299 ... 1). Both end with a step to "
                "timestep 0.")

KNOBS: dict[str, Knob] = {
    # inversion and replay
    "solver": Knob(str, "ddpm", SOLVER_TOOLTIP, choices=SOLVERS),
    "steps": Knob(int, 30, "Steps replayed by sampling; the inversion costs exactly this many evaluations.", 1, 1000),
    "skip": Knob(float, 0.7, SKIP_TOOLTIP, 0.0, 0.99, 0.01),
    "eta": Knob(float, 1.0, "Solver stochasticity; 1 = DDPM / SDE (the papers). Must be > 0.", 0.01, 1.0, 0.01),
    "inversion_cfg": Knob(float, 1.0, "Inversion guidance scale; 1 = positive only (NullFace), -10 between the empty "
                                      "and zeroed prompts (Reverse Personalization, which samples with the same "
                                      "scale: setting cfg alone on its preset sets this too).", -30.0, 30.0, 0.1),
    "keep_final_residual": Knob(bool, False, "The last step's noise map (to timestep 0): keep it as Reverse "
                                             "Personalization does (the inversion lands exactly on the photo's "
                                             "latent; it carries a faint copy of the original's finest detail) or "
                                             "zero it as NullFace does."),
    # guidance
    "cfg": Knob(float, 10.0, "Guidance scale; may be negative (Reverse Personalization -10: the unconditional "
                             "branch becomes the attractor). NullFace +10.", -30.0, 30.0, 0.1),
    "identity_scale": Knob(float, -1.0, "Factor on the embedding in the conditional branch (lambda_id with its sign). "
                                        "NullFace -1 (negated), Reverse Personalization +1. 0 = null identity in both "
                                        "branches: the guider adds nothing and replay reconstructs the input.",
                           -5.0, 5.0, 0.05),
    "zero_negative": Knob(bool, False, "Unconditional text = the zeroed prompt (SDXL's empty prompt) instead of the "
                                       "encoded empty prompt."),
    "gate_face": Knob(bool, True, "Guide only the face (minus kept regions); the rest follows the inversion."),
    "mask_delay": Knob(int, 10, "Sampling steps with guidance everywhere before the mask gates it (NullFace 10 of "
                                "30): blends the edit seamlessly. 0 = gate from the first step.", 0, 1000),
    "mask_feather": Knob(float, 0.0, "Gaussian sigma of the mask at latent resolution (1 latent pixel = 8 image "
                                     "pixels). 0 = NullFace's hard mask (binarised at 0.5).", 0.0, 16.0, 0.5),
    # crops
    "resolution": Knob(int, 512, "Side of the aligned face crop in pixels (512 SD1.5, 1024 SDXL).", 64, 4096, 8),
    "margin": Knob(float, 1.0, "Framing: 1.0 = FFHQ (face, hair, chin); larger keeps more surroundings.",
                   0.5, 4.0, 0.05),
    # identity adapter
    "adapter_weight": Knob(float, 1.0, "Scale of the identity attention (the papers use 1.0).", -2.0, 3.0, 0.01),
    "lora_strength": Knob(float, 1.0, "Strength of the FaceID LoRA (the papers' pipelines apply it at 1.0).",
                          -2.0, 3.0, 0.01),
    # throughput (the result is the same, up to float rounding, for every value)
    "faces_per_call": Knob(int, 0, "Faces sampled together: one UNet call per step carries every face's guidance "
                                   "branches. 0 = as many as fit in the free memory that ComfyUI reports; 1 = one "
                                   "face after another.", 0, 1024, 1),
    "steps_per_call": Knob(int, 0, "Inversion steps evaluated in one UNet call (their noisy latents are drawn up "
                                   "front, so they do not depend on each other). 0 = as many as fit in the free "
                                   "memory that ComfyUI reports; 1 = one call per step.", 0, 1000, 1),
    # detection
    "detection_threshold": Knob(float, 0.5, "Detector score threshold: lower finds more (and more false) faces.",
                                0.05, 0.95, 0.01),
    "min_face_size": Knob(int, 24, "Smallest face to find, in pixels (longer box side). Large photos are scanned in "
                                   "tiles so faces this small are found; smaller detections are ignored (and "
                                   "counted in the report). Smaller values scan more tiles.", 4, 4096, 1),
    # video: tracking (faceanon.tracking), who to anonymize (faceanon.reference), chunks (faceanon.video)
    "detect_every": Knob(int, 1, "Run the detector on every k-th frame only (and on each shot's first and last "
                                 "frame); the frames between are interpolated. Where a track starts, ends or is "
                                 "lost, the skipped frames next to it are detected too. 1 = every frame (safest).",
                         1, 30, 1),
    "max_gap": Knob(int, 8, "Interpolation window: a face missed for at most this many frames inside a track is "
                            "filled in (and anonymized); longer gaps are reported as LOST. Raised to "
                            "detect_every - 1 when smaller.", 0, 120, 1),
    "scene_cut": Knob(float, 0.5, "Colour-histogram change between consecutive frames that counts as a scene cut "
                                  "(a cut ends every track). Lower finds more cuts; 1 = never cut.", 0.05, 1.0, 0.01),
    "smoothing": Knob(float, 0.5, "Smoothing of boxes and keypoints along each track (zero-lag One-Euro filter): "
                                  "0 = raw detections, 1 = strongest.", 0.0, 1.0, 0.05),
    "match_threshold": Knob(float, 0.4, "ArcFace cosine similarity a face needs to count as a reference person "
                                        "(same person: typically 0.5-0.8 with buffalo_l; different people: below "
                                        "0.3).", 0.1, 0.95, 0.01),
    "min_votes": Knob(float, 0.5, "Fraction of a track's detected faces that must match the same reference person "
                                  "for the track to be that person; fewer votes = undecided = anonymized.",
                      0.05, 1.0, 0.05),
    "chunk_frames": Knob(int, 16, "Frames anonymized at a time: bounds memory on long clips (only one chunk's faces "
                                  "are encoded and sampled at once); no effect on the result.", 1, 4096, 1),
}


def knob(name: str) -> Knob:
    """The knob called `name`; KeyError naming the known ones."""
    try:
        return KNOBS[name]
    except KeyError:
        raise KeyError(f"unknown knob {name!r}; known knobs: {', '.join(KNOBS)}") from None
