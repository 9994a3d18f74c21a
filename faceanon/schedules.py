"""Timestep and sigma schedules for inversion and replay, as the two reference pipelines build them.

`skip` expresses where sampling starts and `steps` how many model evaluations it makes; `spacing` says how the
steps are laid out. In both pipelines the last step goes from timestep 1 to timestep 0, i.e. to the model's
smallest sigma (``alphas_cumprod[0]``, SD1.5/SDXL: 0.99915), not to sigma 0.

* ``"leading"``: NullFace (edit-friendly DDPM, arXiv 2304.06140, on diffusers' DDIM "leading" timesteps with
  SD1.5's ``steps_offset = 1``). A schedule of ``N = round(steps / (1 - skip))`` steps spaced ``T // N`` apart
  (``t = k * (T // N) + 1``), of which the first ``N - steps`` are skipped. NullFace's "100 DDPM steps, T_skip 70"
  is ``steps=30, skip=0.7``: timesteps 291, 281, ..., 11, 1. Its last step goes to the "previous" of timestep 1,
  which the reference scheduler (``set_alpha_to_one=False``) sets to ``alphas_cumprod[0]``: timestep 0. The reference
  also computes the 70 skipped inversion steps and throws them away; only the replayed ones are computed here.
* ``"linspace"``: Reverse Personalization (LEDITS++ DPM-Solver++ 2M SDE): ``int(linspace(round((1 - skip) * T) - 1,
  1, steps))``, then timestep 0. "skip 0.7, 100 steps" is timesteps 299, 295, 292, ..., 4, 1, 0.

`SPACING` gives each solver its own paper's spacing (algorithms.md A.3, B.2).
"""

from __future__ import annotations

import torch

__all__ = ["SPACINGS", "SPACING", "FINAL_TIMESTEP", "start_timestep", "max_steps", "inversion_timesteps",
           "inversion_sigmas"]

SPACINGS = ("leading", "linspace")
SPACING = {"ddpm": "leading", "dpmpp_2m_sde": "linspace"}  # solver -> the spacing of its reference pipeline
FINAL_TIMESTEP = 0  # both pipelines' last step lands on timestep 0 (alphas_cumprod[0]), not on sigma 0
LEADING_OFFSET = 1  # SD1.5's scheduler steps_offset


def _check_skip(skip: float) -> None:
    if not 0.0 <= skip < 1.0:
        raise ValueError(f"skip must be in [0, 1) (the fraction of the diffusion range left untouched), got {skip}")


def _check_spacing(spacing: str) -> None:
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")


def start_timestep(skip: float, num_train_timesteps: int = 1000) -> int:
    """Training timestep at which "linspace" sampling starts for a given `skip` fraction.

    Args:
        skip (`float`): fraction of the training range skipped, in [0, 1).
        num_train_timesteps (`int`, defaults to 1000): length of the model's training schedule.

    Returns:
        `int`: the start timestep, ``round((1 - skip) * T) - 1``.
    """
    _check_skip(skip)
    return max(int(round((1.0 - skip) * num_train_timesteps)) - 1, 0)


def _leading(steps: int, skip: float, num_train_timesteps: int) -> list[int] | None:
    """The "leading" timesteps, or None when they do not fit in the training range."""
    total = max(int(round(steps / (1.0 - skip))), steps)  # N of the full schedule whose last `steps` are replayed
    if total > num_train_timesteps:
        return None
    ratio = num_train_timesteps // total
    ts = [(steps - 1 - k) * ratio + LEADING_OFFSET for k in range(steps)]
    return ts if ts[0] < num_train_timesteps else None


def max_steps(skip: float, num_train_timesteps: int = 1000, spacing: str = "linspace") -> int:
    """The most distinct steps (all above timestep 0) that a schedule with this `skip` can have."""
    _check_skip(skip)
    _check_spacing(spacing)
    if spacing == "linspace":
        return max(start_timestep(skip, num_train_timesteps), 1)
    most = 1
    while most < num_train_timesteps and _leading(most + 1, skip, num_train_timesteps) is not None:
        most += 1
    return most


def inversion_timesteps(steps: int, skip: float, num_train_timesteps: int = 1000,
                        spacing: str = "linspace") -> list[int]:
    """The `steps` integer timesteps at which the model is evaluated, in sampling (decreasing) order.

    The schedule continues to `FINAL_TIMESTEP` after the last of them (see `inversion_sigmas`).

    Args:
        steps (`int`): number of sampling steps (= denoiser evaluations per branch), at least 1.
        skip (`float`): fraction of the schedule skipped, in [0, 1).
        num_train_timesteps (`int`, defaults to 1000): length of the model's training schedule.
        spacing (`str`, defaults to "linspace"): "linspace" (Reverse Personalization) or "leading" (NullFace).

    Returns:
        `list[int]`: "linspace": ``int(linspace(start, 1, steps))`` (a single step uses the start timestep);
        "leading": ``[(steps - 1 - k) * (T // N) + 1 for k in range(steps)]`` with ``N = round(steps / (1 - skip))``.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    most = max_steps(skip, num_train_timesteps, spacing)
    if steps > most:
        if spacing == "linspace":
            why = (f"sampling starts at timestep {start_timestep(skip, num_train_timesteps)}, so at most {most} "
                   f"distinct steps are possible")
        else:
            why = (f"the leading schedule has round(steps / (1 - skip)) steps in all, and they must fit in the "
                   f"model's {num_train_timesteps} timesteps")
        raise ValueError(f"steps={steps} is out of range for skip={skip}: allowed 1..{most} ({why}); lower steps or "
                         f"lower skip")
    if spacing == "leading":
        return _leading(steps, skip, num_train_timesteps)
    start = start_timestep(skip, num_train_timesteps)
    if steps == 1:
        return [start]
    ts = torch.linspace(float(start), 1.0, steps, dtype=torch.float64)
    return [int(t) for t in ts]


def inversion_sigmas(train_sigmas: torch.Tensor, steps: int, skip: float, spacing: str = "linspace") -> torch.Tensor:
    """Sigma schedule (length ``steps + 1``) for the model's own training sigmas, ending at timestep 0's sigma.

    Args:
        train_sigmas (`torch.Tensor`): the model's sigma for each training timestep (index t = timestep),
            e.g. ComfyUI's ``model_sampling.sigmas``.
        steps (`int`): number of sampling steps.
        skip (`float`): fraction of the schedule skipped, in [0, 1).
        spacing (`str`, defaults to "linspace"): see `inversion_timesteps`.

    Returns:
        `torch.Tensor`: float32 sigmas in sampling order; the last one is ``train_sigmas[0]`` (timestep 0, where
        both reference pipelines end), not 0.
    """
    train_sigmas = torch.as_tensor(train_sigmas, dtype=torch.float32).flatten().cpu()
    ts = inversion_timesteps(steps, skip, num_train_timesteps=len(train_sigmas), spacing=spacing)
    return train_sigmas[torch.tensor(ts + [FINAL_TIMESTEP], dtype=torch.long)]
