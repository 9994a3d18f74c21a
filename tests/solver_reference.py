"""Independent references of the two solvers, written from the published formulas in the VP form of algorithms.md
(see tests/test_solvers_reference.py), and a toy EPS network wrapped as ComfyUI wraps one. Shares nothing with
faceanon/inversion.py."""

from __future__ import annotations

import math

import torch

DTYPE = torch.float64


def alphas_cumprod() -> torch.Tensor:
    """SD1.5 / SDXL training schedule: scaled_linear betas 0.00085 .. 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=DTYPE) ** 2
    return torch.cumprod(1.0 - betas, 0)


A = alphas_cumprod()


def vp(t: int) -> tuple[float, float, float]:
    """(alpha, sigma, lambda) of timestep t in the VP form."""
    a = float(A[t])
    alpha, sigma = math.sqrt(a), math.sqrt(1.0 - a)
    return alpha, sigma, math.log(alpha / sigma)


def ve_sigma(t: int) -> float:
    a = float(A[t])
    return math.sqrt((1.0 - a) / a)


def ddpm_reference(x_vp, eps, t: int, prev: int, eta: float):
    """The DDPM / DDIM-eta posterior step in the VP form: (mu, noise std)."""
    a_t, a_prev = float(A[t]), float(A[prev])
    v = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)
    x0 = (x_vp - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
    mu = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev - eta ** 2 * v) * eps
    return mu, eta * math.sqrt(v)


def dpmpp_2m_sde_reference(x_vp, x0, x0_prev, s: int, t: int, prev: int | None):
    """One SDE-DPM-Solver++(2M) step s -> t in the VP form; `prev` is the timestep before s (None: first step)."""
    alpha_s, sigma_s, lam_s = vp(s)
    alpha_t, sigma_t, lam_t = vp(t)
    h = lam_t - lam_s
    d = x0
    if prev is not None:
        r = (lam_s - vp(prev)[2]) / h
        d = x0 + 0.5 * (x0 - x0_prev) / r
    mu = (sigma_t / sigma_s) * math.exp(-h) * x_vp + alpha_t * (1.0 - math.exp(-2.0 * h)) * d
    return mu, sigma_t * math.sqrt(1.0 - math.exp(-2.0 * h))


class EpsNet:
    """A toy noise-prediction network eps(x_VP, t), wrapped as ComfyUI wraps an EPS model: the denoiser sees
    ``x_VE``, feeds ``x_VE / sqrt(1 + sigma^2)`` to the network and returns ``x_VE - sigma * eps``."""

    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(4, 4, generator=g, dtype=DTYPE) * 0.5
        self.b = torch.randn(1, 4, 1, 1, generator=g, dtype=DTYPE) * 0.2

    def eps(self, x_vp, t):
        return torch.tanh(torch.einsum("oc,bchw->bohw", self.w, x_vp) + self.b * (1 + t / 1000))

    def denoiser(self):
        log_sigmas = torch.tensor([math.log(ve_sigma(t)) for t in range(1000)], dtype=DTYPE)

        def model(x, sigma, **kw):
            s = float(sigma[0])
            t = int(torch.argmin((log_sigmas - math.log(s)).abs()))  # the timestep, as ComfyUI maps it
            return x - s * self.eps(x / math.sqrt(1.0 + s * s), t)

        return model
