"""Host-independent guidance maths, presets and attribute prompts."""

import pytest
import torch

from faceanon import guidance as G
from faceanon.presets import PRESETS, apply_overrides, describe
from faceanon.prompts import attribute_prompt


def test_cfg_combine_and_signs():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert G.cfg_combine(c, u, 10.0).item() == 11.0
    assert G.cfg_combine(c, u, -10.0).item() == -9.0  # RP: 11 u - 10 c
    e = torch.nn.functional.normalize(torch.randn(3, 512), dim=1)
    assert torch.equal(G.branch_identity(e, -1.0), -e)
    assert torch.count_nonzero(G.branch_identity(e, 0.0)) == 0
    with pytest.raises(ValueError, match=r"\[n, D\]"):
        G.branch_identity(torch.zeros(1, 2, 3), 1.0)


def test_mask_to_latent_hard_and_soft():
    m = torch.zeros(1, 64, 64)
    m[:, 16:48, 16:48] = 1
    hard = G.mask_to_latent(m, (8, 8))
    assert hard.shape == (1, 1, 8, 8) and set(hard.unique().tolist()) == {0.0, 1.0}
    assert hard[0, 0, 2:6, 2:6].min() == 1 and hard[0, 0, 0].max() == 0
    soft = G.mask_to_latent(m, (8, 8), feather=1.0, threshold=None)
    assert 0 < soft[0, 0, 1, 4] < 1  # feathered edge
    with pytest.raises(ValueError, match="mask must be"):
        G.mask_to_latent(torch.zeros(1, 1, 4, 4), (2, 2))


def test_gate_extremes():
    g = torch.Generator().manual_seed(0)
    guided, outside = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    assert torch.equal(G.gate(guided, outside, torch.zeros(1, 1, 8, 8)), outside)
    assert torch.allclose(G.gate(guided, outside, torch.ones(1, 1, 8, 8)), guided, atol=1e-6)
    half = torch.zeros(1, 1, 8, 8)
    half[..., :4] = 1
    out = G.gate(guided, outside, half)
    assert torch.equal(out[..., 4:], outside[..., 4:]) and torch.allclose(out[..., :4], guided[..., :4], atol=1e-6)
    with pytest.raises(ValueError, match="mask batch 3"):
        G.gate(guided, outside, torch.zeros(3, 1, 8, 8))


def test_step_index():
    s = torch.tensor([5.0, 3.0, 1.0, 0.0])
    assert [G.step_index(v, s) for v in (5.0, 3.0, 1.0)] == [0, 1, 2]
    assert G.step_index(2.0, None) == 0


def test_restore_outside_is_bit_exact_outside_the_mask():
    g = torch.Generator().manual_seed(0)
    orig, gen = torch.rand(2, 32, 32, 3, generator=g), torch.rand(2, 32, 32, 3, generator=g)
    mask = torch.zeros(32, 32)
    mask[8:24, 8:24] = 1
    for feather in (0.0, 2.0):
        out = G.restore_outside(orig, gen, mask, feather)
        outside = mask == 0
        assert torch.equal(out[:, outside], orig[:, outside])
        assert torch.allclose(out[:, 14:18, 14:18], gen[:, 14:18, 14:18], atol=1e-3)
    assert torch.equal(G.restore_outside(orig, gen, torch.zeros(32, 32), 2.0), orig)
    with pytest.raises(ValueError, match="differ in shape"):
        G.restore_outside(orig, gen[:1], mask)


def test_presets_carry_the_papers_settings_and_overrides():
    nf, rp = PRESETS["NullFace (SD1.5)"], PRESETS["Reverse Personalization (SDXL)"]
    assert (nf.solver, nf.steps, nf.skip, nf.cfg, nf.identity_scale, nf.mask_delay, nf.resolution) == \
        ("ddpm", 30, 0.7, 10.0, -1.0, 10, 512)
    assert (rp.solver, rp.steps, rp.skip, rp.cfg, rp.identity_scale, rp.inversion_cfg, rp.resolution) == \
        ("dpmpp_2m_sde", 100, 0.7, -10.0, 1.0, -10.0, 1024)
    s = apply_overrides("NullFace (SD1.5)", "cfg = 7.5\n# comment\nsteps=20\nzero_negative = yes")
    assert (s.cfg, s.steps, s.zero_negative, s.solver) == (7.5, 20, True, "ddpm")
    assert apply_overrides(rp, describe(rp)) == rp  # describe() round-trips
    for text, match in [("cfgg = 1", "unknown key 'cfgg'"), ("steps = 0", "allowed range is 1 to 1000"),
                        ("solver = euler", "allowed values are ddpm, dpmpp_2m_sde"),
                        ("steps", "expected 'key = value'"),
                        ("cfg = high", "expected a float")]:
        with pytest.raises(ValueError, match=match):
            apply_overrides("NullFace (SD1.5)", text)
    with pytest.raises(ValueError, match="unknown preset"):
        apply_overrides("nope")


@pytest.mark.parametrize("args,expected", [
    ((0, "any", "any", ""), ""),
    ((37, "male", "white", ""), "37-year-old white man"),
    ((20, "female", "any", "freckles"), "20-year-old girl, freckles"),
    ((8, "male", "east asian", ""), "8-year-old east asian baby boy"),
    ((0, "female", "any", ""), "woman"),
    ((0, "any", "any", "old aging grandpa wrinkles"), "old aging grandpa wrinkles"),
])
def test_attribute_prompts(args, expected):
    assert attribute_prompt(*args) == expected


def test_attribute_prompt_errors():
    with pytest.raises(ValueError, match="sex must be one of"):
        attribute_prompt(sex="robot")
    with pytest.raises(ValueError, match="age must be 0"):
        attribute_prompt(age=200)
