"""Timestep and sigma schedules for inversion and replay.

One parameter, `skip`, expresses where both papers start sampling: the fraction of the model's training
timestep range that is not re-generated. Sampling starts at timestep ``round((1 - skip) * T) - 1`` (T = 1000
for SD1.5/SDXL) and runs `steps` steps evenly spaced down to timestep 1, then to the clean latent (sigma 0).

* Reverse Personalization (LEDITS++): "skip 0.7 of the range, 100 steps" is ``skip=0.7, steps=100``
  (timesteps 299 ... 1), exactly the paper's schedule.
* NullFace: "T_skip = 70 of 100 DDPM steps" replays the last 30 steps (timesteps 291 ... 1): ``skip=0.7,
  steps=30`` (timesteps 299 ... 1, every ~10). The reference code also computes the 70 skipped inversion
  steps and throws them away; we compute only the steps that are replayed.
"""

from __future__ import annotations

import torch

__all__ = ["start_timestep", "inversion_timesteps", "inversion_sigmas", "max_steps"]


def start_timestep(skip: float, num_train_timesteps: int = 1000) -> int:
    """Training timestep at which sampling starts for a given `skip` fraction.

    Args:
        skip (`float`): fraction of the training range skipped, in [0, 1).
        num_train_timesteps (`int`, defaults to 1000): length of the model's training schedule.

    Returns:
        `int`: the start timestep, ``round((1 - skip) * T) - 1``.
    """
    if not 0.0 <= skip < 1.0:
        raise ValueError(f"skip must be in [0, 1) (the fraction of the diffusion range left untouched), got {skip}")
    return max(int(round((1.0 - skip) * num_train_timesteps)) - 1, 0)


def max_steps(skip: float, num_train_timesteps: int = 1000) -> int:
    """The most distinct steps that fit between the start timestep and timestep 1."""
    return max(start_timestep(skip, num_train_timesteps), 1)


def inversion_timesteps(steps: int, skip: float, num_train_timesteps: int = 1000) -> list[int]:
    """The `steps` integer timesteps visited by sampling, in sampling (decreasing) order.

    Args:
        steps (`int`): number of sampling steps (= denoiser evaluations per branch), at least 1.
        skip (`float`): fraction of the training range skipped, in [0, 1).
        num_train_timesteps (`int`, defaults to 1000): length of the model's training schedule.

    Returns:
        `list[int]`: ``int(linspace(start, 1, steps))``; a single step uses the start timestep.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    start = start_timestep(skip, num_train_timesteps)
    most = max_steps(skip, num_train_timesteps)
    if steps > most:
        raise ValueError(
            f"steps={steps} is out of range for skip={skip}: allowed 1..{most} (sampling starts at timestep "
            f"{start}, so at most {most} distinct steps are possible); lower steps or lower skip")
    if steps == 1:
        return [start]
    ts = torch.linspace(float(start), 1.0, steps, dtype=torch.float64)
    return [int(t) for t in ts]


def inversion_sigmas(train_sigmas: torch.Tensor, steps: int, skip: float) -> torch.Tensor:
    """Sigma schedule (length ``steps + 1``, ending in 0) for the model's own training sigmas.

    Args:
        train_sigmas (`torch.Tensor`): the model's sigma for each training timestep (index t = timestep),
            e.g. ComfyUI's ``model_sampling.sigmas``.
        steps (`int`): number of sampling steps.
        skip (`float`): fraction of the training range skipped, in [0, 1).

    Returns:
        `torch.Tensor`: float32 sigmas in sampling order, the last one 0.
    """
    train_sigmas = torch.as_tensor(train_sigmas, dtype=torch.float32).flatten().cpu()
    ts = inversion_timesteps(steps, skip, num_train_timesteps=len(train_sigmas))
    sigmas = train_sigmas[torch.tensor(ts, dtype=torch.long)]
    return torch.cat([sigmas, sigmas.new_zeros(1)])
