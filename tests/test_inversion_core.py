"""Contract tests of the host-independent inversion solvers, on toy denoisers with known answers."""

import math

import pytest
import torch

from faceanon import inversion as inv
from faceanon.schedules import inversion_sigmas, inversion_timesteps, start_timestep


def sd_train_sigmas():
    """SD1.5/SDXL's 1000 training sigmas (scaled_linear betas 0.00085..0.012)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, 0)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


class GaussianDenoiser:
    """Exact denoiser of x0 ~ N(m, s^2 I): D(x, sigma) = (s^2 x + sigma^2 m) / (s^2 + sigma^2)."""

    def __init__(self, m=0.3, s=0.8):
        self.m, self.s, self.calls = m, s, 0

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        s2, g2 = self.s ** 2, sigma.view(-1, 1, 1, 1) ** 2
        return (s2 * x + g2 * self.m) / (s2 + g2)


class NonlinearDenoiser:
    """An arbitrary nonlinear 'network': any denoiser must be replayed exactly."""

    def __init__(self, seed=0, shift=0.0):
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(4, 4, generator=g) * 0.5
        self.shift = shift

    def __call__(self, x, sigma, **kw):
        c = 1.0 / (1.0 + sigma.view(-1, 1, 1, 1) ** 2) ** 0.5
        h = torch.einsum("oc,bchw->bohw", self.w, x * c)
        return torch.tanh(h) * 1.5 + x * c * 0.2 + self.shift


def latent(seed=1, shape=(2, 4, 8, 8)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("solver", inv.SOLVERS)
@pytest.mark.parametrize("steps,skip", [(1, 0.7), (5, 0.7), (30, 0.7), (12, 0.0), (20, 0.5)])
def test_replay_lands_on_every_trajectory_latent(solver, steps, skip):
    model = NonlinearDenoiser()
    x0 = latent()
    sigmas = inversion_sigmas(sd_train_sigmas(), steps, skip)
    seen_inv = []
    result = inv.invert(model, x0, sigmas, solver=solver, generator=torch.Generator().manual_seed(3),
                        callback=lambda d: seen_inv.append(d["x"].clone()))
    seen = []
    out = inv.sample_replay(model, result.x_start.clone(), sigmas, inversion=result, keep_final_residual=True,
                            callback=lambda d: seen.append(d["x"].clone()))
    assert len(seen) == steps == len(seen_inv)
    for a, b in zip(seen, seen_inv, strict=True):
        assert rel(a, b) < 1e-4
    assert rel(out, x0) < 1e-4


@pytest.mark.parametrize("solver", inv.SOLVERS)
def test_dropping_final_residual_misses_by_exactly_the_residual(solver):
    model = NonlinearDenoiser()
    x0 = latent()
    sigmas = inversion_sigmas(sd_train_sigmas(), 10, 0.7)
    result = inv.invert(model, x0, sigmas, solver=solver, generator=torch.Generator().manual_seed(0))
    out = inv.sample_replay(model, result.x_start, sigmas, inversion=result, keep_final_residual=False)
    assert result.final_residual is not None
    assert rel(out + result.final_residual, x0) < 1e-4
    assert rel(out, x0) > 1e-3  # the nonlinear toy is far from exact at the last step
    assert torch.count_nonzero(result.noises[-1]) == 0  # the last step's correction is the final residual


def test_ddpm_noise_maps_match_closed_form_for_an_oracle():
    """With the oracle denoiser D = x0 the DDPM noise maps have a closed form."""
    x0 = latent()
    sigmas = inversion_sigmas(sd_train_sigmas(), 6, 0.6)
    gen_seed = 11
    result = inv.invert(lambda x, s, **k: x0, x0, sigmas, solver="ddpm",
                        generator=torch.Generator().manual_seed(gen_seed))
    n = torch.randn((len(sigmas), *x0.shape), generator=torch.Generator().manual_seed(gen_seed))
    for i in range(len(sigmas) - 2):
        s, sn = float(sigmas[i]), float(sigmas[i + 1])
        up = math.sqrt(sn ** 2 * (s ** 2 - sn ** 2) / s ** 2)
        down = math.sqrt(sn ** 2 - up ** 2)
        expected = (sn * n[i + 1] - down * n[i]) / up
        assert torch.allclose(result.noises[i], expected, atol=1e-4)
    assert torch.allclose(result.x_start, x0 + float(sigmas[0]) * n[0], atol=1e-6)
    # the last step (to timestep 0's sigma) lands on x0: its residual is minus the posterior mean's noise part
    s, sn = float(sigmas[-2]), float(sigmas[-1])
    assert sn > 0
    assert torch.allclose(result.final_residual, -(sn ** 2 / s) * n[-2], atol=1e-5)


def test_exactly_steps_evaluations_and_gaussian_model():
    model = GaussianDenoiser()
    x0 = latent(shape=(1, 4, 4, 4))
    sigmas = inversion_sigmas(sd_train_sigmas(), 30, 0.7)
    result = inv.invert(model, x0, sigmas, solver="dpmpp_2m_sde", generator=torch.Generator().manual_seed(0))
    assert model.calls == 30
    model.calls = 0
    out = inv.sample_replay(model, result.x_start, sigmas, inversion=result, keep_final_residual=True)
    assert model.calls == 30
    assert rel(out, x0) < 1e-4


def test_other_denoiser_changes_the_result_and_history_is_reset():
    """Replaying with another denoiser moves the result; replaying twice gives the same result (no stale state)."""
    x0 = latent()
    sigmas = inversion_sigmas(sd_train_sigmas(), 8, 0.7)
    result = inv.invert(NonlinearDenoiser(), x0, sigmas, solver="dpmpp_2m_sde",
                        generator=torch.Generator().manual_seed(0))
    other = NonlinearDenoiser(shift=0.05)
    a = inv.sample_replay(other, result.x_start, sigmas, inversion=result)
    b = inv.sample_replay(other, result.x_start, sigmas, inversion=result)
    assert torch.equal(a, b)
    assert rel(a, x0) > 1e-2


def test_seeded_inversion_is_deterministic_and_seed_matters():
    x0, sigmas, model = latent(), inversion_sigmas(sd_train_sigmas(), 5, 0.7), NonlinearDenoiser()
    a = inv.invert(model, x0, sigmas, generator=torch.Generator().manual_seed(5))
    b = inv.invert(model, x0, sigmas, generator=torch.Generator().manual_seed(5))
    c = inv.invert(model, x0, sigmas, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.noises, b.noises) and torch.equal(a.x_start, b.x_start)
    assert not torch.equal(a.x_start, c.x_start)


def test_schedules_express_both_papers():
    # Reverse Personalization: 100 steps from t = 299 down to 1 (LEDITS++ linspace).
    ts = inversion_timesteps(100, 0.7)
    assert ts[0] == 299 and ts[-1] == 1 and len(set(ts)) == 100
    # NullFace: the last 30 steps of the 100-step leading schedule (offset 1): 291, 281, ..., 1.
    ts = inversion_timesteps(30, 0.7, spacing="leading")
    assert ts == list(range(291, 0, -10))
    assert start_timestep(0.0) == 999
    train = sd_train_sigmas()
    s = inversion_sigmas(train, 30, 0.7, spacing="leading")
    assert len(s) == 31 and float(s[-1]) == float(train[0].float()) and torch.all(s[:-1] > s[1:])
    with pytest.raises(ValueError, match="spacing must be one of"):
        inversion_timesteps(10, 0.7, spacing="trailing")
    with pytest.raises(ValueError, match=r"steps=11 is out of range for skip=0.99: allowed 1..10"):
        inversion_timesteps(11, 0.99, spacing="leading")


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0, skip=0.7), "steps must be an integer >= 1"),
    (dict(steps=5, skip=1.0), r"skip must be in \[0, 1\)"),
    (dict(steps=5, skip=-0.1), r"skip must be in \[0, 1\)"),
    (dict(steps=50, skip=0.99), "at most 9 distinct steps"),
])
def test_bad_schedule_values_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        inversion_timesteps(**kwargs)


def test_bad_solver_eta_shape_and_sigmas():
    x0, sigmas, model = latent(), inversion_sigmas(sd_train_sigmas(), 5, 0.7), NonlinearDenoiser()
    with pytest.raises(ValueError, match="solver must be one of"):
        inv.invert(model, x0, sigmas, solver="euler")
    with pytest.raises(ValueError, match=r"eta must be in \(0, 1\]"):
        inv.invert(model, x0, sigmas, eta=0.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        inv.invert(model, x0, sigmas.flip(0))
    result = inv.invert(model, x0, sigmas)
    with pytest.raises(ValueError, match=r"shape \(1, 4, 8, 8\) but the inversion was made from a latent of shape "
                                         r"\(2, 4, 8, 8\)"):
        inv.sample_replay(model, x0[:1], sigmas, inversion=result)
    with pytest.raises(ValueError, match="not the inversion's"):
        inv.sample_replay(model, x0, inversion_sigmas(sd_train_sigmas(), 6, 0.7), inversion=result)


class CountingDenoiser(NonlinearDenoiser):
    """Records the rows and sigmas of every call."""

    def __init__(self, seed=0):
        super().__init__(seed)
        self.calls = []

    def __call__(self, x, sigma, **kw):
        self.calls.append(sigma.clone())
        return super().__call__(x, sigma, **kw)


@pytest.mark.parametrize("solver", inv.SOLVERS)
@pytest.mark.parametrize("k", [2, 3, 7, 30])
def test_steps_per_call_equals_step_by_step(solver, k):
    """The denoiser's inputs are drawn up front, so k steps can share a call; the solver steps (DPM-Solver++'s
    midpoint correction needs the previous output) still run in order: same noise maps, residual and start."""
    x0, steps = latent(), 10
    sigmas = inversion_sigmas(sd_train_sigmas(), steps, 0.6)
    one, many = CountingDenoiser(), CountingDenoiser()
    ref = inv.invert(one, x0, sigmas, solver=solver, generator=torch.Generator().manual_seed(5))
    got = inv.invert(many, x0, sigmas, solver=solver, generator=torch.Generator().manual_seed(5), steps_per_call=k)
    assert len(one.calls) == steps and len(many.calls) == math.ceil(steps / k)
    # each call carries its steps' sigmas, one per row (2 rows per step here)
    assert torch.equal(torch.cat(many.calls), torch.cat(one.calls))
    assert rel(got.x_start, ref.x_start) == 0
    assert rel(got.noises, ref.noises) < 1e-5 and rel(got.final_residual, ref.final_residual) < 1e-5
    out = inv.sample_replay(NonlinearDenoiser(), got.x_start, sigmas, inversion=got, keep_final_residual=True)
    assert rel(out, x0) < 1e-4


def test_per_row_generators_equal_inverting_each_row_alone():
    x0 = latent(shape=(3, 4, 8, 8))
    sigmas = inversion_sigmas(sd_train_sigmas(), 6, 0.7)
    batch = inv.invert(NonlinearDenoiser(), x0, sigmas, solver="dpmpp_2m_sde", steps_per_call=3,
                       generator=[torch.Generator().manual_seed(s) for s in (4, 9, 2)])
    for b, s in enumerate((4, 9, 2)):
        alone = inv.invert(NonlinearDenoiser(), x0[b:b + 1], sigmas, solver="dpmpp_2m_sde",
                           generator=torch.Generator().manual_seed(s))
        assert torch.equal(batch.x_start[b:b + 1], alone.x_start)
        assert rel(batch.noises[:, b:b + 1], alone.noises) < 1e-5
    with pytest.raises(ValueError, match="got 2 generators for a latent batch of 3 rows"):
        inv.invert(NonlinearDenoiser(), x0, sigmas, generator=[torch.Generator(), torch.Generator()])
    with pytest.raises(ValueError, match="steps_per_call must be >= 1"):
        inv.invert(NonlinearDenoiser(), x0, sigmas, steps_per_call=0)
