"""The solver steps against independent references written from the published formulas, on numbers.

Replay reproduces any step formula, so reconstruction tests cannot tell a right solver from a wrong one: here each
step of `faceanon.inversion` is compared with the formula written in the variance-preserving (VP) form of
algorithms.md, from alphas_cumprod, with nothing shared with the code under test.

* DDPM posterior (Ho et al. 2020; DDIM's eta form, Song et al. 2021 eq. 12/16; algorithms.md A.3):
  ``v = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)``, ``x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)``,
  ``mu = sqrt(a_prev) x0 + sqrt(1 - a_prev - eta^2 v) eps``, noise std ``eta sqrt(v)``.
* SDE-DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095; algorithms.md B.2), ``lambda = log(alpha / sigma)``,
  ``h = lambda_t - lambda_s``: ``mu = (sigma_t / sigma_s) e^-h x + alpha_t (1 - e^-2h) (x0_s + D1 / 2)`` with
  ``D1 = (x0_s - x0_prev) / r``, ``r = (lambda_s - lambda_prev) / h`` from the second step on (D1 = 0 on the first),
  noise std ``sigma_t sqrt(1 - e^-2h)``.

The code works in ComfyUI's variance-exploding space, ``x_VE = x_VP / alpha``, sigma_VE = sigma_VP / alpha``;
the comparison converts the code's outputs with the target timestep's alpha.
"""

from __future__ import annotations

import math

import pytest
import torch

from faceanon import inversion as inv
from faceanon.schedules import inversion_sigmas, inversion_timesteps
from tests.solver_reference import DTYPE, A, EpsNet, ddpm_reference, dpmpp_2m_sde_reference, ve_sigma, vp

def randn(seed, shape=(1, 4, 6, 6)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def close(a, b, tol=1e-9):
    return float((a - b).abs().max()) <= tol * max(1.0, float(torch.as_tensor(b).abs().max()))


# Pairs (t -> previous) from both papers' schedules, including the last step to timestep 0.
DDPM_PAIRS = [(291, 281), (151, 141), (11, 1), (1, 0), (999, 500)]


@pytest.mark.parametrize("t,prev", DDPM_PAIRS)
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_ddpm_step_is_the_vp_posterior(t, prev, eta):
    x_vp, eps = randn(1), randn(2)
    x0_hat = (x_vp - math.sqrt(1.0 - float(A[t])) * eps) / math.sqrt(float(A[t]))
    mu, up = inv.ddpm_step(x_vp / math.sqrt(float(A[t])), x0_hat, ve_sigma(t), ve_sigma(prev), eta)
    mu_ref, std_ref = ddpm_reference(x_vp, eps, t, prev, eta)
    alpha_prev = math.sqrt(float(A[prev]))
    assert close(mu * alpha_prev, mu_ref)
    assert math.isclose(up * alpha_prev, std_ref, rel_tol=1e-9)
    assert std_ref > 1e-3  # a real noise term: a wrong scale is visible


# A chain with strongly unequal steps in lambda (r far from 1): the last steps of Reverse Personalization's schedule
# and of NullFace's, where a wrong r is visible.
DPM_CHAINS = [[299, 295, 292, 289], [13, 10, 7, 4, 1, 0], [291, 281, 121, 11, 1, 0]]


@pytest.mark.parametrize("chain", DPM_CHAINS)
def test_dpmpp_2m_sde_steps_are_the_published_formula(chain):
    history: dict = {}
    x0_prev, rs = None, []
    for i, (s, t) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
        x_vp, x0 = randn(10 + i), randn(20 + i)
        mu, up = inv.dpmpp_2m_sde_step(x_vp / vp(s)[0], x0, ve_sigma(s), ve_sigma(t), 1.0, history)
        prev = chain[i - 1] if i else None
        mu_ref, std_ref = dpmpp_2m_sde_reference(x_vp, x0, x0_prev, s, t, prev)
        assert close(mu * vp(t)[0], mu_ref), f"step {s} -> {t}"
        assert math.isclose(up * vp(t)[0], std_ref, rel_tol=1e-9), f"step {s} -> {t}"
        if prev is not None:
            rs.append((vp(s)[2] - vp(prev)[2]) / (vp(t)[2] - vp(s)[2]))
        x0_prev = x0
    if len(chain) > 4:
        assert max(abs(math.log(abs(r))) for r in rs) > 0.3  # r is far from 1 somewhere: 1/r vs r is visible


def test_dpmpp_2m_sde_second_order_term_is_visible():
    """Guard of the test above: on these numbers the second-order term is far larger than the tolerance."""
    s, t, prev = 4, 1, 7
    x_vp, x0, x0_prev = randn(1), randn(2), randn(3)
    first, _ = dpmpp_2m_sde_reference(x_vp, x0, x0_prev, s, t, None)
    second, _ = dpmpp_2m_sde_reference(x_vp, x0, x0_prev, s, t, prev)
    assert float((first - second).abs().max()) > 1e-3


# -- whole inversions and replays against the references --------------------------------------------------------


def reference_chain(net, x0, ts, draws, solver, zs=None):
    """algorithms.md's inversion (zs None) or replay (with zs) in the VP form; returns (latent, zs).

    The last step's target is the clean latent as the sampler's output space holds it (x0 in VE units at timestep 0,
    alpha_0 * x0 in VP units; the reference pipelines decode their VP latent directly, a 4e-4 relative difference
    below their fp16 precision)."""
    alphas = [vp(t)[0] for t in ts]
    sigmas = [vp(t)[1] for t in ts]
    xs = [alphas[i] * x0 + sigmas[i] * draws[i] for i in range(len(ts))]
    xs[-1] = alphas[-1] * x0
    x = xs[0]
    out_zs, x0_prev = [], None
    for i in range(len(ts) - 1):
        s, t = ts[i], ts[i + 1]
        eps = net.eps(x, s)
        if solver == "ddpm":
            mu, std = ddpm_reference(x, eps, s, t, 1.0)
        else:
            x0_hat = (x - sigmas[i] * eps) / alphas[i]
            mu, std = dpmpp_2m_sde_reference(x, x0_hat, x0_prev, s, t, ts[i - 1] if i else None)
            x0_prev = x0_hat
        z = (xs[i + 1] - mu) / std if zs is None else zs[i]
        out_zs.append(z)
        x = mu + std * z
    return x / alphas[-1], out_zs  # back to the sampler's (VE) units


@pytest.mark.parametrize("solver,spacing,steps", [("ddpm", "leading", 6), ("dpmpp_2m_sde", "linspace", 7)])
def test_inversion_and_replay_follow_the_reference_chain(solver, spacing, steps):
    train = torch.tensor([ve_sigma(t) for t in range(1000)], dtype=DTYPE)
    sigmas = inversion_sigmas(train, steps, 0.7, spacing).to(DTYPE)
    ts = inversion_timesteps(steps, 0.7, spacing=spacing) + [0]
    x0 = randn(5, (1, 4, 6, 6))
    result = inv.invert(EpsNet(1).denoiser(), x0, sigmas, solver=solver, generator=torch.Generator().manual_seed(9))
    draws = torch.randn((steps + 1, *x0.shape), generator=torch.Generator().manual_seed(9), dtype=torch.float32)
    _, zs = reference_chain(EpsNet(1), x0, ts, draws.to(DTYPE), solver)
    for i in range(steps - 1):
        assert close(result.noises[i].to(DTYPE), zs[i], 1e-4), f"noise map {i}"
    # replay with another network (another identity): every step, and the last one kept or dropped
    other = EpsNet(2)
    for keep in (True, False):
        out = inv.sample_replay(other.denoiser(), result.x_start.to(DTYPE), sigmas, inversion=result,
                                keep_final_residual=keep)
        ref_zs = zs[:-1] + ([zs[-1]] if keep else [torch.zeros_like(x0)])
        expected, _ = reference_chain(other, x0, ts, draws.to(DTYPE), solver, zs=ref_zs)
        assert close(out, expected, 1e-4), f"keep_final_residual={keep}"
