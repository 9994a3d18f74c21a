"""The two presets pinned to their reference pipelines (algorithms.md A.3-A.5, B.2-B.3): every value, the timesteps,
the last step against the papers' formulas, and the guidance scales of inversion and sampling."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from faceanon import inversion as inv
from faceanon.presets import PRESETS, apply_overrides, guidance_warning
from faceanon.schedules import SPACING, inversion_sigmas, inversion_timesteps
from tests.solver_reference import DTYPE, EpsNet, ddpm_reference, dpmpp_2m_sde_reference, ve_sigma, vp

NULLFACE, RP = "NullFace (SD1.5)", "Reverse Personalization (SDXL)"

# faces_per_call / steps_per_call: batching only (0 = as many as fit), the results do not depend on them
EXPECTED = {
    NULLFACE: dict(solver="ddpm", steps=30, skip=0.7, eta=1.0, inversion_cfg=1.0, cfg=10.0, identity_scale=-1.0,
                   zero_negative=False, gate_face=True, mask_delay=10, mask_feather=0.0, resolution=512, margin=1.0,
                   adapter_weight=1.0, lora_strength=1.0, keep_final_residual=False, faces_per_call=0,
                   steps_per_call=0),
    RP: dict(solver="dpmpp_2m_sde", steps=100, skip=0.7, eta=1.0, inversion_cfg=-10.0, cfg=-10.0, identity_scale=1.0,
             zero_negative=True, gate_face=False, mask_delay=0, mask_feather=0.0, resolution=1024, margin=1.0,
             adapter_weight=1.0, lora_strength=1.0, keep_final_residual=True, faces_per_call=0, steps_per_call=0),
}

# The reference pipelines' timesteps, written out independently of faceanon.schedules:
# NullFace: diffusers DDIM "leading" with 100 steps and steps_offset 1 (991, 981, ..., 1), the last 30 after T_skip 70;
# Reverse Personalization: int(np.linspace(1000 * (1 - 0.7) - 1, 1, 100)), then 0.
REFERENCE_TIMESTEPS = {
    NULLFACE: [int(t) for t in (np.arange(0, 100) * (1000 // 100))[::-1] + 1][70:] + [0],
    RP: [int(t) for t in np.linspace(1000 * (1 - 0.7) - 1, 1, 100)] + [0],
}


def timesteps(settings) -> list[int]:
    return inversion_timesteps(settings.steps, settings.skip, spacing=SPACING[settings.solver]) + [0]


@pytest.mark.parametrize("name", [NULLFACE, RP])
def test_every_preset_value_is_pinned(name):
    assert dataclasses.asdict(PRESETS[name]) == EXPECTED[name]


def test_reference_timesteps_are_the_papers():
    """The independent lists above say what algorithms.md says (guards this test file itself)."""
    nf, rp = REFERENCE_TIMESTEPS[NULLFACE], REFERENCE_TIMESTEPS[RP]
    assert nf[:3] == [291, 281, 271] and nf[-3:] == [11, 1, 0] and len(nf) == 31
    assert rp[:4] == [299, 295, 292, 289] and rp[-4:] == [7, 4, 1, 0] and len(set(rp)) == 101


@pytest.mark.parametrize("name", [NULLFACE, RP])
def test_preset_timesteps_are_the_reference_pipelines(name):
    settings = PRESETS[name]
    assert timesteps(settings) == REFERENCE_TIMESTEPS[name]
    train = torch.tensor([ve_sigma(t) for t in range(1000)], dtype=DTYPE)
    sigmas = inversion_sigmas(train, settings.steps, settings.skip, SPACING[settings.solver])
    assert torch.allclose(sigmas.to(DTYPE), train[REFERENCE_TIMESTEPS[name]], rtol=1e-6)
    # the last step goes to the "previous" of t=1, the reference's final alpha: alphas_cumprod[0] = 1 - beta_0
    assert math.isclose(1.0 / (1.0 + float(sigmas[-1]) ** 2), 1.0 - 0.00085, rel_tol=1e-6)


def last_step(name, keep):
    """Invert with one toy network, replay the preset's schedule with another; the values around the last step."""
    settings = PRESETS[name]
    ts = timesteps(settings)
    train = torch.tensor([ve_sigma(t) for t in range(1000)], dtype=DTYPE)
    sigmas = inversion_sigmas(train, settings.steps, settings.skip, SPACING[settings.solver]).to(DTYPE)
    x0 = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    result = inv.invert(EpsNet(1).denoiser(), x0, sigmas, solver=settings.solver,
                        generator=torch.Generator().manual_seed(4))
    seen = []
    out = inv.sample_replay(EpsNet(2).denoiser(), result.x_start.to(DTYPE), sigmas, inversion=result,
                            keep_final_residual=keep, callback=seen.append)
    rec = inv.sample_replay(EpsNet(1).denoiser(), result.x_start.to(DTYPE), sigmas, inversion=result,
                            keep_final_residual=keep)
    return ts, x0, result, out, rec, seen


def test_nullface_last_step_is_the_ddpm_posterior_to_the_final_alpha_with_its_noise_map_zeroed():
    ts, x0, result, out, rec, seen = last_step(NULLFACE, PRESETS[NULLFACE].keep_final_residual)
    assert ts[-2:] == [1, 0]
    x_before, denoised = seen[-2]["x"], seen[-1]["denoised"]
    alpha_1 = vp(1)[0]
    x_vp = x_before * alpha_1
    eps = (x_vp - alpha_1 * denoised) / vp(1)[1]
    mu, std = ddpm_reference(x_vp, eps, 1, 0, 1.0)  # A.3: mu_tau(x, eps) with alpha_prev = alphas_cumprod[0]
    assert std > 1e-3  # the dropped noise term is real
    assert torch.allclose(out * vp(0)[0], mu, atol=1e-6)
    # dropping it misses the photo by exactly the last noise term, even with the inversion's own network
    assert torch.allclose(rec + result.final_residual.to(DTYPE), x0, atol=1e-5)
    assert float(result.final_residual.abs().max()) > 1e-3


def test_reverse_personalization_last_step_keeps_its_noise_map_and_lands_on_x0():
    ts, x0, result, out, rec, seen = last_step(RP, PRESETS[RP].keep_final_residual)
    assert ts[-3:] == [4, 1, 0]
    assert torch.allclose(rec, x0, atol=1e-6)  # the inversion's network lands exactly on the photo's latent
    # another network: the second-order step 1 -> 0 of B.2 plus the inversion's noise term for that step
    x_before, d, d_prev = seen[-2]["x"], seen[-1]["denoised"], seen[-2]["denoised"]
    mu, std = dpmpp_2m_sde_reference(x_before * vp(1)[0], d, d_prev, 1, 0, 4)
    assert std > 1e-3
    assert torch.allclose(out, mu / vp(0)[0] + result.final_residual.to(DTYPE), atol=1e-6)


# -- one guidance scale for Reverse Personalization, a warning where a mismatch breaks something ----------------


def test_reverse_personalization_ties_inversion_and_sampling_cfg():
    s = apply_overrides(RP, "cfg = -7.5")
    assert (s.cfg, s.inversion_cfg) == (-7.5, -7.5) and guidance_warning(s) is None
    s = apply_overrides(RP, "inversion_cfg = -5")
    assert (s.cfg, s.inversion_cfg) == (-5.0, -5.0)
    s = apply_overrides(RP, "cfg = -7.5\ninversion_cfg = -10")  # both given: kept as given, with a warning
    assert (s.cfg, s.inversion_cfg) == (-7.5, -10.0)
    warning = guidance_warning(s)
    assert warning and "cfg -7.5 differs from the inversion's cfg -10" in warning
    assert "identity_scale 0 no longer reconstructs" in warning and "2.5 x (conditional - unconditional" in warning


def test_nullface_sampling_cfg_is_free_because_its_texts_are_equal():
    s = apply_overrides(NULLFACE, "cfg = 7.5")
    assert (s.cfg, s.inversion_cfg) == (7.5, 1.0) and guidance_warning(s) is None
    s = apply_overrides(NULLFACE, "zero_negative = true")  # now the texts differ: cfg 10 vs inversion 1 breaks it
    assert guidance_warning(s) and "cfg 10 differs from the inversion's cfg 1" in guidance_warning(s)
