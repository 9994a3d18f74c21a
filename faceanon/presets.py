"""The two papers' settings as presets, with text overrides.

A preset sets every knob of the method; `apply_overrides` changes any of them from ``key = value`` lines, so a user
gets the published behaviour without reading the papers and can still change everything. Each knob's type, range
and tooltip are declared once, in `faceanon.knobs`.

Each preset replays its reference pipeline exactly (algorithms.md A.3-A.5, B.2-B.3): the timesteps (see
faceanon.schedules: each solver uses its paper's spacing, and both end with a step to timestep 0), the conditioning
of inversion and sampling, and the last step (NullFace zeroes its last noise map, Reverse Personalization keeps it).
Reverse Personalization uses one guidance scale for inversion and sampling: see `tie_guidance`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields, replace

from .guidance import cfg_mismatch
from .knobs import knob

__all__ = ["Settings", "PRESETS", "apply_overrides", "describe", "tie_guidance", "guidance_warning"]


@dataclass(frozen=True)
class Settings:
    """Every knob of one anonymization run (see README "Presets")."""

    solver: str            # inversion / replay solver: "ddpm" or "dpmpp_2m_sde"
    steps: int             # sampling steps = inversion steps (model evaluations per branch)
    skip: float            # fraction of the schedule left untouched (see faceanon.schedules)
    eta: float             # solver stochasticity (0, 1]
    inversion_cfg: float   # guidance scale during inversion (1 = positive only)
    cfg: float             # sampling guidance scale; negative pushes away from the conditional branch
    identity_scale: float  # factor on the ArcFace embedding in the conditional branch (NullFace -1, RP +1)
    zero_negative: bool    # unconditional text = zeroed prompt (SDXL's empty prompt) instead of the encoded ""
    gate_face: bool        # gate the identity guidance to the face region (else the whole crop is guided)
    mask_delay: int        # sampling steps with guidance everywhere before the region mask gates it
    mask_feather: float    # Gaussian sigma of the latent mask, latent pixels (0 = NullFace's hard mask)
    resolution: int        # side of the aligned face crop, pixels
    margin: float          # face framing (1.0 = FFHQ-like)
    adapter_weight: float  # IP-Adapter FaceID attention weight
    lora_strength: float   # strength of the FaceID LoRA
    keep_final_residual: bool  # keep the last step's noise map (RP; lands on the inversion) or zero it (NullFace)
    faces_per_call: int = 0    # faces sampled together, one UNet call per step (0 = as many as fit; 1 = one by one)
    steps_per_call: int = 0    # inversion steps per UNet call (0 = as many as fit in free memory; 1 = step by step)


PRESETS: dict[str, Settings] = {
    # NullFace (FG 2026): SD1.5, DDPM eta 1 on the 100-step leading schedule, replaying its last 30 steps (timesteps
    # 291, 281, ..., 1, then to timestep 0 with the last noise map zeroed), text "" in both branches, no CFG during
    # inversion, negated identity with guidance +10, face mask after 10 steps.
    "NullFace (SD1.5)": Settings(
        solver="ddpm", steps=30, skip=0.7, eta=1.0, inversion_cfg=1.0, cfg=10.0, identity_scale=-1.0,
        zero_negative=False, gate_face=True, mask_delay=10, mask_feather=0.0, resolution=512, margin=1.0,
        adapter_weight=1.0, lora_strength=1.0, keep_final_residual=False),
    # Reverse Personalization (WACV 2026): SDXL, DPM-Solver++ 2M SDE, timesteps int(linspace(299, 1, 100)) then 0
    # with the last noise map kept, one guidance scale -10 for inversion (between the zeroed and the "" prompt) and
    # sampling (positive identity), no mask.
    "Reverse Personalization (SDXL)": Settings(
        solver="dpmpp_2m_sde", steps=100, skip=0.7, eta=1.0, inversion_cfg=-10.0, cfg=-10.0, identity_scale=1.0,
        zero_negative=True, gate_face=False, mask_delay=0, mask_feather=0.0, resolution=1024, margin=1.0,
        adapter_weight=1.0, lora_strength=1.0, keep_final_residual=True),
}


def describe(settings: Settings) -> str:
    """One ``key = value`` line per knob (the format `apply_overrides` reads)."""
    return "\n".join(f"{f.name} = {getattr(settings, f.name)}" for f in fields(Settings))


def _parse(key: str, raw: str):
    """The value of one ``key = raw`` line, of the knob's type and within its range (`faceanon.knobs`)."""
    spec = knob(key)
    if spec.kind is bool:
        low = raw.lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"override {key} = {raw!r}: expected true or false")
    kind = spec.kind
    try:
        value = kind(float(raw)) if kind is int and raw.replace(".", "", 1).isdigit() else kind(raw)
    except ValueError as e:
        raise ValueError(f"override {key} = {raw!r}: expected a {kind.__name__}") from e
    try:
        return spec.check(key, value)
    except ValueError as e:
        raise ValueError(f"override {e}") from None


def apply_overrides(preset: str | Settings, text: str = "") -> Settings:
    """A preset with ``key = value`` lines applied (blank lines and ``#`` comments ignored).

    Args:
        preset (`str` | `Settings`): a name from `PRESETS`, or settings to start from.
        text (`str`): overrides, e.g. ``"cfg = -7.5\\nsteps = 50"``.

    Returns:
        `Settings`: the preset with the overrides.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    known = [f.name for f in fields(Settings)]
    changes = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"override line {n} {line!r}: expected 'key = value'")
        key, raw = (s.strip() for s in line.split("=", 1))
        if key not in known:
            raise ValueError(f"override line {n}: unknown key {key!r}; known keys: {', '.join(known)}")
        changes[key] = _parse(key, raw)
    return tie_guidance(preset, replace(preset, **changes), changes)


def tie_guidance(preset: Settings, settings: Settings, given: Collection[str]) -> Settings:
    """One guidance scale for inversion and sampling where the preset uses one (Reverse Personalization).

    When `preset`'s ``cfg`` and ``inversion_cfg`` are equal and the overrides (`given`, the keys set) set only one of
    them, the other follows: ``cfg = -7.5`` on Reverse Personalization inverts and samples at -7.5, as its reference
    pipeline does. Setting both, or a preset with two scales (NullFace: its texts are equal, so its inversion scale
    is moot), keeps them as given; `guidance_warning` says what a mismatch breaks.
    """
    if preset.cfg != preset.inversion_cfg:
        return settings
    if "cfg" in given and "inversion_cfg" not in given:
        return replace(settings, inversion_cfg=settings.cfg)
    if "inversion_cfg" in given and "cfg" not in given:
        return replace(settings, cfg=settings.inversion_cfg)
    return settings


def guidance_warning(settings: Settings) -> str | None:
    """What these settings break by sampling with a scale other than the inversion's, or None.

    The texts of the two branches differ exactly when the unconditional one is the zeroed prompt.
    """
    return cfg_mismatch(settings.cfg, settings.inversion_cfg, texts_differ=settings.zero_negative)
