"""The presets inside a real ComfyUI: their timesteps as the model's own timesteps, and the guidance scales of
inversion and sampling (the identity-free prediction is the inversion's; a sampling cfg other than the inversion's
is tied by the preset or reported with what it breaks)."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.test_anonymize_host import FAST, graph, setup  # noqa: F401 - `setup` is a fixture used below
from tests.test_guidance_host import Setup, rel
from tests.test_presets_pinned import NULLFACE, REFERENCE_TIMESTEPS, RP

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def s(host, tmp_path_factory):
    return Setup(host, tmp_path_factory.mktemp("presets"))


@pytest.mark.parametrize("name,family", [(NULLFACE, "sd15"), (RP, "sdxl")])
def test_preset_timesteps_through_the_model_sampling(host, name, family):
    """The preset's sigmas, mapped back by the model's own ModelSamplingDiscrete, are the reference's timesteps."""
    from faceanon.presets import PRESETS
    from dev.tiny_models import SD15_TINY_UNET, SDXL_TINY_UNET, build_model_patcher

    inversion = host.pack("nodes.inversion")
    p = PRESETS[name]
    model = build_model_patcher(SD15_TINY_UNET if family == "sd15" else SDXL_TINY_UNET, family)
    sigmas = inversion.schedule_sigmas(model, p.solver, p.steps, p.skip)
    ms = model.get_model_object("model_sampling")
    assert [int(ms.timestep(sg)) for sg in sigmas] == REFERENCE_TIMESTEPS[name]
    # the final alpha is the model's alphas_cumprod[0] (the "previous" of t=1 in the reference schedulers)
    assert abs(1.0 / (1.0 + float(sigmas[-1]) ** 2) - (1.0 - 0.00085)) < 1e-6
    assert torch.equal(sigmas[-1], ms.sigmas[0].float())


def test_the_inversion_runs_the_preset_schedule_and_records_its_conditioning(s):
    from faceanon.presets import PRESETS

    p = PRESETS[NULLFACE]
    inverted = s.inv.invert_latent(s.model, s.empty, s.empty, {"samples": s.lat}, p.solver, p.steps, p.skip, p.eta,
                                   p.inversion_cfg, 1)
    assert torch.equal(inverted.core.sigmas, s.inv.schedule_sigmas(s.model, p.solver, p.steps, p.skip))
    assert inverted.positive is s.empty and inverted.negative is s.empty and inverted.cfg == p.inversion_cfg


# -- a sampling cfg other than the inversion's --------------------------------------------------------------------


@pytest.fixture(scope="module")
def rp_inverted(s):
    """A Reverse Personalization-style inversion: cfg -10 between "" and the zeroed prompt."""
    return s.invert("dpmpp_2m_sde", -10.0, s.zero)


def test_outside_the_gate_the_prediction_is_the_inversions_at_any_sampling_cfg(s, rp_inverted):
    """Zero mask from step 0, strong identity, sampling cfg -7.5 != the inversion's -10: the identity-free
    prediction uses the inversion's scale and texts, so the replay reconstructs exactly; a guider that is not told
    the inversion (it assumes its own cfg) drifts."""
    zero_mask = torch.zeros(1, 64, 64)
    told = s.gd.identity_guider(s.model, s.empty, s.zero, s.e, 1.0, -7.5, None, zero_mask, 0, inversion=rp_inverted)
    assert rel(s.replay(rp_inverted, told), s.lat) < 1e-5
    # texts come from the inversion too: a guider whose own negative is "" still follows the inversion outside
    other_text = s.gd.identity_guider(s.model, s.empty, s.empty, s.e, 1.0, -7.5, s.attr, zero_mask, 0,
                                      inversion=rp_inverted)
    assert rel(s.replay(rp_inverted, other_text), s.lat) < 1e-5
    untold = s.gd.identity_guider(s.model, s.empty, s.zero, s.e, 1.0, -7.5, None, zero_mask, 0)
    assert rel(s.replay(rp_inverted, untold), s.lat) > 5e-5  # 1.2e-4 on the tiny model: 100x the told guider's


def test_a_cfg_mismatch_breaks_reconstruction_and_the_guider_node_says_so(s, rp_inverted, caplog):
    """identity_scale 0 reconstructs at the inversion's cfg and drifts at another one; the node logs why."""
    same = s.gd.identity_guider(s.model, s.empty, s.zero, s.e, 0.0, -10.0, inversion=rp_inverted)
    assert rel(s.replay(rp_inverted, same), s.lat) < 1e-5
    other = s.gd.identity_guider(s.model, s.empty, s.zero, s.e, 0.0, -7.5, inversion=rp_inverted)
    assert rel(s.replay(rp_inverted, other), s.lat) > 5e-5
    node = s.gd.FaceAnonIdentityGuider
    with caplog.at_level(logging.WARNING):
        node.execute(s.model, s.empty, s.zero, s.e, 0.0, -10.0, inversion=rp_inverted)
        assert not caplog.records
        node.execute(s.model, s.empty, s.zero, s.e, 0.0, -7.5, inversion=rp_inverted)
    assert len(caplog.records) == 1
    assert "cfg -7.5 differs from the inversion's cfg -10" in caplog.text
    assert "identity_scale 0 no longer reconstructs" in caplog.text
    assert s.gd.inversion_mismatch(rp_inverted, s.empty, s.empty, -10.0).startswith("the guider's positive/negative")
    # NullFace: "" in both branches, any sampling cfg is consistent with the inversion's 1
    nf = s.invert("ddpm", 1.0, s.empty)
    assert s.gd.inversion_mismatch(nf, s.empty, s.empty, 10.0) is None


def test_faceanonymize_reports_a_cfg_the_inversion_did_not_use(host, setup, monkeypatch):  # noqa: F811
    """Both scales set apart on Reverse Personalization: the inversion runs at its own, the sampling at its own, and
    the report says what that breaks (`cfg = -7.5` alone sets both: test_presets_pinned)."""
    anon = host.pack("nodes.anonymize")
    loaded = host.run({k: v for k, v in graph(setup).items() if k in ("1", "2", "3", "4")}, all_nodes=True)
    model, clip, vae = loaded["1"]
    image, analysis, adapter = loaded["2"][0], loaded["3"][0], loaded["4"][0]
    seen = set()
    real_invert, real_guider = anon.invert_latent, anon.identity_guider

    def invert_spy(*args, **kwargs):
        seen.add(("inversion", args[8]))  # cfg, the ninth positional parameter of invert_latent
        return real_invert(*args, **kwargs)

    def guider_spy(*args, **kwargs):
        seen.add(("sampling", args[5], kwargs["inversion"].cfg))
        return real_guider(*args, **kwargs)

    monkeypatch.setattr(anon, "invert_latent", invert_spy)
    monkeypatch.setattr(anon, "identity_guider", guider_spy)
    with torch.inference_mode():  # as ComfyUI runs nodes
        text = anon.FaceAnonymize.execute(image, model, clip, vae, analysis, adapter, RP, 3,
                                          overrides=FAST + "\ncfg = -7.5\ninversion_cfg = -10").args[2]
    assert seen == {("inversion", -10.0), ("sampling", -7.5, -10.0)}
    assert "WARNING: sampling cfg -7.5 differs from the inversion's cfg -10" in text
