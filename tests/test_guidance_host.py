"""The identity guider in a real ComfyUI: formulas of both presets, reconstruction properties, the mask gate and
where the attribute prompt goes. Tiny random SD1.5-layout UNet + a tiny FaceID file in the real key layout."""

from __future__ import annotations

import pytest
import torch

from dev.faceid_files import faceid_state_dict, layers_of, write_bin


pytestmark = pytest.mark.usefixtures("one_thread")


class Setup:
    def __init__(self, host, tmp):
        from dev.tiny_models import SD15_TINY_UNET, build_model_patcher

        self.inv = host.pack("nodes.inversion")
        self.gd = host.pack("nodes.guidance")
        self.ida = host.pack("nodes.id_adapter")
        base = build_model_patcher(SD15_TINY_UNET, "sd15", seed=3)
        layers = layers_of(base)
        sd = faceid_state_dict(layers, rank=8, dtype=torch.float32, seed=11, kv_scale=0.3, lora_scale=0.05)
        adapter = self.ida.load_id_adapter(write_bin(sd, tmp / "tiny_faceid.bin"))
        self.model = self.ida.apply_id_adapter(base, adapter)
        g = torch.Generator().manual_seed(5)
        self.empty = [[torch.randn(1, 77, 64, generator=g) * 0.5, {}]]
        self.zero = [[torch.zeros(1, 77, 64), {}]]
        self.attr = [[torch.randn(1, 77, 64, generator=g) * 0.5 + 3.0, {}]]
        self.e = torch.nn.functional.normalize(torch.randn(2, 512, generator=g), dim=1)
        self.lat = torch.randn(2, 4, 8, 8, generator=g)

    def invert(self, solver, cfg, negative, steps=6):
        return self.inv.invert_latent(self.model, self.empty, negative, {"samples": self.lat}, solver, steps, 0.6,
                                      1.0, cfg, 1)

    def replay(self, inverted, guider, keep=True):
        noise = self.inv.InversionNoise(inverted).generate_noise({"samples": self.lat})
        return guider.sample(noise, self.lat, self.inv.replay_sampler(inverted, keep), inverted.core.sigmas)


@pytest.fixture(scope="module")
def s(host, tmp_path_factory):
    return Setup(host, tmp_path_factory.mktemp("guidance"))


def rel(a, b):
    return float((a - b).norm() / b.norm())


PRESETS = {  # identity_scale, cfg, negative, attribute
    "nullface": (-1.0, 10.0, "empty", False),
    "reverse_personalization": (1.0, -10.0, "zero", True),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_guided_prediction_is_the_preset_formula(s, preset):
    """One guider call equals uncond + cfg * (cond - uncond) with the branches evaluated separately."""
    import comfy.samplers

    id_scale, cfg, neg_name, use_attr = PRESETS[preset]
    negative = s.empty if neg_name == "empty" else s.zero
    attribute = s.attr if use_attr else None
    guider = s.gd.identity_guider(s.model, s.empty, negative, s.e, id_scale, cfg, attribute)
    seen = {}

    @torch.no_grad()
    def probe(model, x, sigmas, extra_args=None, callback=None, disable=None):
        sigma = sigmas[0] * x.new_ones([x.shape[0]])
        seen["guided"] = model(x, sigma, **extra_args)
        mo = extra_args["model_options"]
        uncond = guider.conds["attribute"] if use_attr else guider.conds["negative"]
        with_id = s.ida.with_branch_identities(mo, {0: id_scale * s.e})
        seen["cond"] = comfy.samplers.calc_cond_batch(guider.inner_model, [guider.conds["positive"]], x, sigma,
                                                      with_id)[0]
        seen["uncond"] = comfy.samplers.calc_cond_batch(guider.inner_model, [uncond], x, sigma,
                                                        s.ida.with_branch_identities(mo, {}))[0]
        return x

    guider.sample(torch.zeros_like(s.lat), s.lat, comfy.samplers.KSAMPLER(probe), torch.tensor([2.0, 1.0]))
    expected = seen["uncond"] + cfg * (seen["cond"] - seen["uncond"])
    assert rel(seen["guided"], expected) < 1e-5
    assert rel(seen["cond"], seen["uncond"]) > 1e-3  # the identity (and text) really change the branch


@pytest.mark.parametrize("solver,inv_cfg,neg,id_scale,cfg", [
    ("ddpm", 1.0, "empty", -1.0, 10.0),           # NullFace
    ("dpmpp_2m_sde", -10.0, "zero", 1.0, -10.0),  # Reverse Personalization
])
def test_identity_scale_zero_reconstructs_and_identity_moves(s, solver, inv_cfg, neg, id_scale, cfg):
    negative = s.empty if neg == "empty" else s.zero
    inverted = s.invert(solver, inv_cfg, negative)
    rec = s.replay(inverted, s.gd.identity_guider(s.model, s.empty, negative, s.e, 0.0, inv_cfg if neg == "zero"
                                                  else cfg))
    assert rel(rec, s.lat) < 1e-4
    moved = s.replay(inverted, s.gd.identity_guider(s.model, s.empty, negative, s.e, id_scale, cfg))
    assert rel(moved, s.lat) > 1e-2


@pytest.mark.parametrize("use_attr", [False, True])
def test_all_zero_mask_keeps_the_inversion_trajectory(s, use_attr):
    """With a zero mask from step 0 the gated prediction is the identity-free one: exact reconstruction even under
    strong identity guidance and an attribute prompt; a full mask changes the latent."""
    inverted = s.invert("dpmpp_2m_sde", -10.0, s.zero)
    attr = s.attr if use_attr else None
    zero_mask = torch.zeros(1, 64, 64)
    g0 = s.gd.identity_guider(s.model, s.empty, s.zero, s.e, 1.0, -10.0, attr, zero_mask, 0)
    assert rel(s.replay(inverted, g0), s.lat) < 1e-4
    g1 = s.gd.identity_guider(s.model, s.empty, s.zero, s.e, 1.0, -10.0, attr, torch.ones(1, 64, 64), 0)
    assert rel(s.replay(inverted, g1), s.lat) > 1e-2


def test_mask_delay_applies_guidance_everywhere_first(s):
    inverted = s.invert("ddpm", 1.0, s.empty)
    zero_mask = torch.zeros(1, 64, 64)
    late = s.gd.identity_guider(s.model, s.empty, s.empty, s.e, -1.0, 10.0, None, zero_mask, 3)
    never = s.gd.identity_guider(s.model, s.empty, s.empty, s.e, -1.0, 10.0, None, zero_mask, 0)
    assert rel(s.replay(inverted, never), s.lat) < 1e-4
    assert rel(s.replay(inverted, late), s.lat) > 1e-3  # the first 3 steps were guided everywhere


def test_attribute_prompt_reaches_only_the_unconditional_branch_during_sampling(s):
    seen = []  # (phase, chunk index, is attribute text)
    phase = {"now": "inversion"}

    def spy(apply_model, args):
        ctx = args["c"]["c_crossattn"]
        n = len(args["cond_or_uncond"])
        per = ctx.shape[0] // n
        for j, idx in enumerate(args["cond_or_uncond"]):
            is_attr = torch.allclose(ctx[j * per], s.attr[0][0][0])
            seen.append((phase["now"], idx, is_attr))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = s.model.clone()
    model.set_model_unet_function_wrapper(spy)
    inverted = s.inv.invert_latent(model, s.empty, s.zero, {"samples": s.lat}, "dpmpp_2m_sde", 4, 0.6, 1.0, -10.0, 1)
    phase["now"] = "sampling"
    guider = s.gd.identity_guider(model, s.empty, s.zero, s.e, 1.0, -10.0, s.attr)
    s.replay(inverted, guider)
    assert not any(a for p, _, a in seen if p == "inversion")
    sampling = [(i, a) for p, i, a in seen if p == "sampling"]
    assert sampling and all(a == (i == 1) for i, a in sampling)
    assert any(a for _, a in sampling)


def test_attribute_prompt_node_encodes_and_zeroes_empty_sdxl(s):
    class FakeClip:
        def __init__(self, sdxl):
            self.cond_stage_model = type("M", (), {"clip_g": object()})() if sdxl else object()
            self.texts = []

        def tokenize(self, text):
            self.texts.append(text)
            return text

        def encode_from_tokens_scheduled(self, tokens):
            return [[torch.ones(1, 77, 8), {"pooled_output": torch.ones(1, 4)}]]

    node = s.gd.FaceAnonAttributePrompt
    clip = FakeClip(sdxl=True)
    cond, prompt = node.execute(clip, 37, "male", "white", "").args
    assert prompt == "37-year-old white man" and clip.texts == [prompt] and cond[0][0].abs().sum() > 0
    cond, prompt = node.execute(clip, 0, "any", "any", "").args
    assert prompt == "" and cond[0][0].abs().sum() == 0 and cond[0][1]["pooled_output"].abs().sum() == 0
    cond, _ = node.execute(FakeClip(sdxl=False), 0, "any", "any", "").args
    assert cond[0][0].abs().sum() > 0  # SD1.5 keeps the real empty-prompt encoding


def test_pre_and_post_cfg_hooks_keep_working(s):
    """Other packs' sampler_pre_cfg_function / post_cfg_function hooks run on the guider's two branches."""
    import comfy.samplers

    seen = {"pre": 0, "post": 0}

    def pre(args):
        seen["pre"] += 1
        assert len(args["conds_out"]) == 2
        return [c * 1.0 for c in args["conds_out"]]

    def post(args):
        seen["post"] += 1
        assert {"cond_denoised", "uncond_denoised", "denoised"} <= set(args)
        return args["denoised"] * 0.0 + 0.25  # a recognisable replacement

    m = s.model.clone()
    m.set_model_sampler_pre_cfg_function(pre)
    m.set_model_sampler_post_cfg_function(post)
    guider = s.gd.identity_guider(m, s.empty, s.empty, s.e, -1.0, 10.0)
    out = {}

    @torch.no_grad()
    def probe(model, x, sigmas, extra_args=None, callback=None, disable=None):
        out["x0"] = model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
        return x

    guider.sample(torch.zeros_like(s.lat), s.lat, comfy.samplers.KSAMPLER(probe), torch.tensor([2.0, 1.0]))
    assert seen == {"pre": 1, "post": 1}
    assert torch.allclose(out["x0"], torch.full_like(out["x0"], 0.25))
