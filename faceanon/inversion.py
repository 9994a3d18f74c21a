"""Edit-friendly inversion and exact replay, in k-diffusion's sampler style.

Everything works on a *denoiser* ``model(x, sigma, **extra_args) -> x0_hat`` in the variance-exploding
parametrisation ``x_sigma = x0 + sigma * eps`` that ComfyUI's samplers use. The denoiser hides the prediction
type (EPS or V-prediction are both converted to x0 by the host), so the same solvers serve both.

Edit-friendly inversion (Huberman-Spiegelglas et al., 2024, arXiv 2304.06140): draw every noisy latent of the
trajectory independently, ``x_i = x0 + sigma_i * n_i``, then solve, step by step, for the noise map ``z_i`` that
makes the stochastic sampler land exactly on the next stored latent. Replaying the sampler with the same noise
maps and the same denoiser reproduces the trajectory exactly; a different denoiser (another identity) moves only
what it changes.

The last step lands on the clean latent ``x0`` itself (as in both reference pipelines, algorithms.md A.3, B.2). What
it needs on top of the solver's deterministic part, ``x0 - mu`` (its noise term when the schedule ends above sigma 0,
the plain denoise's error when it ends at 0), is kept as `final_residual`. Replay adds it back or drops it:
Reverse Personalization keeps its last noise map (exact reconstruction, and the last step injects a faint copy of the
original's finest detail); NullFace zeroes it (its sample ends on the solver's own last step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["Inversion", "SOLVERS", "invert", "sample_replay", "ddpm_step", "dpmpp_2m_sde_step"]

SOLVERS = ("ddpm", "dpmpp_2m_sde")

Denoiser = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Inversion:
    """The result of an inversion: everything replay needs.

    Attributes:
        x0 (`torch.Tensor`): the clean latent that was inverted (the denoiser's space).
        x_start (`torch.Tensor`): the noisy latent at ``sigmas[0]`` where sampling starts.
        noises (`torch.Tensor`): ``[steps, *x0.shape]`` noise maps in sampling order; the last one is zero (the
            last step's correction is `final_residual`).
        final_residual (`torch.Tensor`): ``x0 - mu`` of the last step: what lands it exactly on ``x0``.
        sigmas (`torch.Tensor`): the schedule, ``steps + 1`` values in sampling order.
        solver (`str`): one of `SOLVERS`.
        eta (`float`): stochasticity of the solver, in (0, 1].
    """

    x0: torch.Tensor
    x_start: torch.Tensor
    noises: torch.Tensor
    final_residual: torch.Tensor
    sigmas: torch.Tensor
    solver: str
    eta: float

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x0.shape)


def ddpm_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float,
              eta: float) -> tuple[torch.Tensor, float]:
    """One DDPM posterior step (Ho et al. 2020, DDIM eta form) as an ancestral step in sigma space.

    ``x_next = denoised + sigma_down * eps_hat + sigma_up * z`` with ``eps_hat = (x - denoised) / sigma``,
    ``sigma_up = min(sigma_next, eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))`` and
    ``sigma_down = sqrt(sigma_next^2 - sigma_up^2)``. At eta = 1 this is exactly the DDPM posterior.

    Returns:
        `(mu, sigma_up)`: the deterministic part of ``x_next`` and the scale of the noise map.
    """
    if sigma_next == 0:
        return denoised, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    sigma_down = math.sqrt(max(sigma_next ** 2 - sigma_up ** 2, 0.0))
    eps = (x - denoised) / sigma
    return denoised + sigma_down * eps, sigma_up


def dpmpp_2m_sde_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float, eta: float,
                      history: dict[str, Any]) -> tuple[torch.Tensor, float]:
    """One DPM-Solver++(2M) SDE step, midpoint variant (Lu et al. 2022, arXiv 2211.01095; LEDITS++).

    With ``t = -log(sigma)`` and ``h = t_next - t``:
    ``mu = (sigma_next / sigma) e^{-eta h} x + (1 - e^{-(1+eta) h}) D``, where ``D`` is the denoised estimate
    plus, from the second step on, the midpoint correction ``(D - D_prev) / (2 r)``, ``r = h_prev / h``. The noise
    scale is ``sigma_next * sqrt(1 - e^{-2 eta h})``. `history` carries ``D_prev`` and ``h_prev`` between steps; an
    empty dict starts a fresh (first-order) chain.

    Returns:
        `(mu, sigma_up)`: the deterministic part of ``x_next`` and the scale of the noise map.
    """
    if sigma_next == 0:
        history.clear()
        return denoised, 0.0
    h = math.log(sigma) - math.log(sigma_next)
    eta_h = eta * h
    mu = (sigma_next / sigma) * math.exp(-eta_h) * x + (-math.expm1(-h - eta_h)) * denoised
    if "denoised" in history:
        r = history["h"] / h
        mu = mu + 0.5 * (-math.expm1(-h - eta_h)) * (1.0 / r) * (denoised - history["denoised"])
    history["denoised"] = denoised
    history["h"] = h
    return mu, sigma_next * math.sqrt(-math.expm1(-2.0 * eta_h))


def _step(solver: str, x, denoised, sigma, sigma_next, eta, history):
    if solver == "ddpm":
        return ddpm_step(x, denoised, sigma, sigma_next, eta)
    return dpmpp_2m_sde_step(x, denoised, sigma, sigma_next, eta, history)


def _check(solver: str, eta: float, sigmas: torch.Tensor) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not 0.0 < eta <= 1.0:
        raise ValueError(f"eta must be in (0, 1] (edit-friendly inversion needs a noise term), got {eta}")
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D schedule with at least 2 values, got shape {tuple(sigmas.shape)}")
    if not bool(torch.all(sigmas[:-1] > sigmas[1:])):
        raise ValueError(f"sigmas must be strictly decreasing (sampling order), got {sigmas.tolist()}")
    if float(sigmas[-1]) < 0:
        raise ValueError(f"sigmas must be >= 0, got {sigmas.tolist()}")


def _draws(n: int, x: torch.Tensor, generator) -> torch.Tensor:
    """``[n, *x.shape]`` standard normal draws on the CPU: from one generator, or row b from ``generator[b]``."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn((n, *x.shape), generator=generator, dtype=torch.float32)
    generators = list(generator)
    if len(generators) != x.shape[0]:
        raise ValueError(f"got {len(generators)} generators for a latent batch of {x.shape[0]} rows: give one "
                         f"generator, or one per row")
    return torch.stack([torch.randn((n, *x.shape[1:]), generator=g, dtype=torch.float32) for g in generators], 1)


@torch.no_grad()
def invert(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
           callback: Callable | None = None, disable: bool | None = None, solver: str = "ddpm", eta: float = 1.0,
           generator: torch.Generator | Sequence[torch.Generator] | None = None,
           steps_per_call: int = 1) -> Inversion:
    """Edit-friendly inversion of a clean latent `x` along `sigmas` (arXiv 2304.06140, Alg. 1).

    Every noisy latent is drawn before any model call, so the denoiser's inputs do not depend on its outputs: only
    the solver steps do (the noise map of step i needs ``D_i``, and DPM-Solver++ 2M SDE's midpoint correction
    ``D_{i-1}`` too). With ``steps_per_call = k > 1`` the denoiser therefore sees k steps' latents at once (one call
    on ``k * batch`` rows with per-row sigmas), and the steps are then solved in order, as with k = 1. The results
    equal k = 1's within float rounding (k = 1 evaluates each step at the latent recomputed from its noise map,
    ``mu + sigma_up * z``; k > 1 at the drawn latent it equals up to one rounding).

    Args:
        model (`Callable`): denoiser ``model(x, sigma_batch, **extra_args) -> x0_hat``; with ``steps_per_call > 1``
            it must treat each row with its own sigma (ComfyUI's models do).
        x (`torch.Tensor`): the clean latent to invert.
        sigmas (`torch.Tensor`): strictly decreasing schedule in sampling order (``steps + 1`` values).
        extra_args (`dict`, *optional*): passed to the denoiser.
        callback (`Callable`, *optional*): called after each step with k-diffusion's keys.
        disable (`bool`, *optional*): unused (k-diffusion signature).
        solver (`str`, defaults to "ddpm"): "ddpm" (NullFace) or "dpmpp_2m_sde" (Reverse Personalization).
        eta (`float`, defaults to 1.0): stochasticity, in (0, 1].
        generator (`torch.Generator` or a sequence of them, *optional*): CPU generator(s) for the independent noisy
            latents; a sequence gives each batch row its own (row b inverted alone with ``generator[b]`` draws the
            same latents).
        steps_per_call (`int`, defaults to 1): steps whose denoiser evaluations share one call.

    Returns:
        `Inversion`: start latent, noise maps in sampling order, the final residual and the schedule.
        Exactly ``steps`` denoiser evaluations are made, in ``ceil(steps / steps_per_call)`` calls.
    """
    extra_args = {} if extra_args is None else extra_args
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).cpu()
    _check(solver, eta, sigmas)
    if int(steps_per_call) < 1:
        raise ValueError(f"steps_per_call must be >= 1 (1 = one denoiser call per step), got {steps_per_call}")
    n = len(sigmas) - 1
    k = min(int(steps_per_call), n)
    s_in = x.new_ones([x.shape[0]])
    draws = _draws(n + 1, x, generator)
    # Independent noisy latents x_i = x0 + sigma_i n_i; the last step's target is x0 itself.
    xs = [x + float(s) * draws[i].to(x.device, x.dtype) for i, s in enumerate(sigmas.tolist())]
    xs[n] = x
    noises = torch.zeros((n, *x.shape), dtype=x.dtype)
    final_residual = None
    history: dict[str, Any] = {}
    chunk: list[torch.Tensor] = []
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if k == 1:
            denoised = model(xs[i], sigma * s_in, **extra_args)
        else:
            if i % k == 0:  # the next k steps' evaluations in one call
                rows = range(i, min(i + k, n))
                out = model(torch.cat([xs[j] for j in rows]), torch.cat([float(sigmas[j]) * s_in for j in rows]),
                            **extra_args)
                chunk = list(out.split(x.shape[0]))
            denoised = chunk[i % k]
        mu, sigma_up = _step(solver, xs[i], denoised, sigma, sigma_next, eta, history)
        if i < n - 1:
            z = (xs[i + 1] - mu) / sigma_up
            noises[i] = z.cpu()
            xs[i + 1] = mu + sigma_up * z  # keeps the chain consistent with what replay computes
        else:
            final_residual = (xs[n] - mu).cpu()
        if callback is not None:
            callback({"x": xs[i + 1], "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
    return Inversion(x0=x.detach().cpu(), x_start=xs[0].detach().cpu(), noises=noises,
                     final_residual=final_residual, sigmas=sigmas, solver=solver, eta=float(eta))


@torch.no_grad()
def sample_replay(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                  callback: Callable | None = None, disable: bool | None = None, inversion: Inversion | None = None,
                  keep_final_residual: bool = False) -> torch.Tensor:
    """Sample from `x` along `sigmas`, injecting the inversion's noise maps (the replay of `invert`).

    The multistep history starts empty, so the first step is first order exactly as in inversion (the reference
    LEDITS++ pipeline forgets this reset; algorithms.md B.6).

    Args:
        model (`Callable`): denoiser ``model(x, sigma_batch, **extra_args) -> x0_hat``.
        x (`torch.Tensor`): start latent, normally ``inversion.x_start``.
        sigmas (`torch.Tensor`): the inversion's schedule.
        extra_args (`dict`, *optional*): passed to the denoiser.
        callback (`Callable`, *optional*): called after each step with k-diffusion's keys.
        disable (`bool`, *optional*): unused (k-diffusion signature).
        inversion (`Inversion`): the noise maps and solver to replay.
        keep_final_residual (`bool`, defaults to False): end the last step on the inversion's target (its noise
            map kept: Reverse Personalization, exact reconstruction) instead of on the solver's deterministic part
            (its noise map zeroed: NullFace).

    Returns:
        `torch.Tensor`: the sampled latent.
    """
    if inversion is None:
        raise ValueError("sample_replay needs the `inversion` whose noise maps it replays")
    extra_args = {} if extra_args is None else extra_args
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32).cpu()
    if tuple(x.shape) != inversion.shape:
        raise ValueError(f"the latent to sample has shape {tuple(x.shape)} but the inversion was made from a latent "
                         f"of shape {inversion.shape}: sample the same latent that was inverted")
    if sigmas.shape != inversion.sigmas.shape or not torch.allclose(sigmas, inversion.sigmas, rtol=1e-4, atol=1e-6):
        raise ValueError(f"the sigmas to sample ({len(sigmas) - 1} steps, {sigmas[0].item():.4f} -> "
                         f"{sigmas[-1].item():.4f}) are not the inversion's ({inversion.steps} steps, "
                         f"{inversion.sigmas[0].item():.4f} -> {inversion.sigmas[-1].item():.4f}): use the inversion's "
                         f"own sigmas")
    s_in = x.new_ones([x.shape[0]])
    history: dict[str, Any] = {}
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = model(x, sigma * s_in, **extra_args)
        mu, sigma_up = _step(inversion.solver, x, denoised, sigma, sigma_next, inversion.eta, history)
        if i < len(sigmas) - 2:
            x = mu + sigma_up * inversion.noises[i].to(x.device, x.dtype)
        elif keep_final_residual:
            x = mu + inversion.final_residual.to(x.device, x.dtype)
        else:
            x = mu
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
    return x
