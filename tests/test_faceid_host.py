"""The FaceID identity branch inside a real ComfyUI (in-process): patching, the branch contract, the LoRA through
ComfyUI's weight patching, chaining, family checks on full-size (meta-device) UNets, and the nodes in graphs."""

from __future__ import annotations

import copy
import time
import uuid
from contextlib import contextmanager

import pytest
import torch

from faceanon import faceid as CF
from dev.faceid_files import (
    SD15_UNET,
    SDXL_UNET,
    diffusers_attention_paths,
    faceid_state_dict,
    layers_of,
    kohya_lora_state_dict,
    layout_from_unet_config,
    write_bin,
    write_safetensors,
)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ida(host):
    return host.pack("nodes.id_adapter")


@pytest.fixture(scope="module")
def tiny(host):
    from dev import tiny_models

    return tiny_models


class Tiny:
    """A tiny random UNet (SD1.5 or SDXL layout), a matching FaceID file on disk, and helpers to evaluate it."""

    def __init__(self, host, ida, tiny, family, tmp):
        cfg = tiny.SD15_TINY_UNET if family == "sd15" else tiny.SDXL_TINY_UNET
        self.family, self.cfg = family, cfg
        self.model = tiny.build_model_patcher(cfg, family=family, seed=3)
        self.layers = layers_of(self.model)
        self.sd = faceid_state_dict(self.layers, rank=8, dtype=torch.float32, seed=11, kv_scale=0.1,
                                    lora_scale=0.05)
        self.path = write_bin(self.sd, tmp / f"tiny_faceid_{family}.bin")
        self.adapter = ida.load_id_adapter(self.path)
        g = torch.Generator().manual_seed(5)
        self.ctx = torch.randn(1, 7, cfg["context_dim"], generator=g)
        self.ctx_neg = torch.randn(1, 7, cfg["context_dim"], generator=g)
        self.y = torch.randn(1, 2816, generator=g) if family == "sdxl" else None
        self.x = torch.randn(2, 4, 8, 8, generator=g)
        self.e = torch.randn(2, 512, generator=g)

    def cond(self, ctx):
        import comfy.conds

        mc = {"c_crossattn": comfy.conds.CONDCrossAttn(ctx)}
        if self.y is not None:
            mc["y"] = comfy.conds.CONDRegular(self.y)
        return [{"model_conds": mc, "uuid": uuid.uuid4()}]

    def run(self, patcher, model_options=None, sigma=3.0, same_text=False, x=None):
        """calc_cond_batch([positive, negative]) -> [x0 of positive, x0 of negative], weights patched as sampling
        would (LoRA applied) and restored afterwards."""
        import comfy.samplers

        x = self.x if x is None else x
        conds = [self.cond(self.ctx), self.cond(self.ctx if same_text else self.ctx_neg)]
        mo = patcher.model_options if model_options is None else model_options
        with loaded(patcher), torch.no_grad():
            return comfy.samplers.calc_cond_batch(patcher.model, conds, x, torch.full((x.shape[0],), sigma), mo)


@contextmanager
def loaded(patcher):
    patcher.patch_model(device_to=CPU)
    patcher.pre_run()
    try:
        yield patcher
    finally:
        patcher.unpatch_model(device_to=CPU)


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def tm(request, host, ida, tiny, tmp_path_factory):
    return Tiny(host, ida, tiny, request.param, tmp_path_factory.mktemp("faceid"))


@pytest.fixture(scope="module")
def sd15(host, ida, tiny, tmp_path_factory):
    return Tiny(host, ida, tiny, "sd15", tmp_path_factory.mktemp("faceid15"))


def close(a, b, tol=1e-6):
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def differs(a, b, tol=1e-4):
    return float((a - b).abs().max()) > tol * float(b.abs().max())


# -- every cross-attention layer is patched -----------------------------------------------------------------------


def test_every_attn2_layer_is_patched_with_its_processor(tm, ida, monkeypatch):
    m = ida.apply_id_adapter(tm.model, tm.adapter)
    to = m.model_options["transformer_options"]
    cross = [la for la in tm.layers if la.attn == "attn2"]
    assert set(to["patches_replace"]["attn2"]) == {la.patch_key for la in cross}
    # count attn2 modules in the real UNet: with the patch, ComfyUI never calls their forward (it is replaced)
    attn2 = [mod for name, mod in m.model.diffusion_model.named_modules() if name.endswith(".attn2")]
    assert len(attn2) == len(cross) == {"sd15": 7, "sdxl": 11}[tm.family]
    seen, forward_calls = [], []
    hooks = [mod.register_forward_hook(lambda *a: forward_calls.append(1)) for mod in attn2]
    original = ida.FaceIDAttn2Patch.__call__

    def spy(self, q, k, v, extra):
        seen.append((self.layer.processor, extra["block"], extra["block_index"]))
        return original(self, q, k, v, extra)

    monkeypatch.setattr(ida.FaceIDAttn2Patch, "__call__", spy)
    try:
        tm.run(m)
        assert forward_calls == []
        assert len(seen) == len(cross)  # one call per layer (positive and negative batched together)
        expected = {(la.processor, la.block, la.transformer_index) for la in cross}
        assert set(seen) == expected  # each layer got its own processor's weights, middle block = ("middle", 0)
        assert any(b == ("middle", 0) for _, b, _ in seen)
        monkeypatch.undo()
        forward_calls.clear()
        tm.run(tm.model)
        assert len(forward_calls) == len(cross)  # unpatched: the normal attn2 runs
    finally:
        for h in hooks:
            h.remove()


# -- the branch contract ------------------------------------------------------------------------------------------


def test_identity_changes_only_its_branch_and_elements(tm, ida):
    m = ida.apply_id_adapter(tm.model, tm.adapter, lora_strength=0.7)
    e_a, e_b = tm.e[:1], tm.e[1:]
    null_pos, null_neg = tm.run(m)
    pos, neg = tm.run(m, ida.with_branch_identities(m.model_options, {0: e_a}))
    assert differs(pos, null_pos) and close(neg, null_neg)
    pos, neg = tm.run(m, ida.with_branch_identities(m.model_options, {1: -2.0 * e_a}))
    assert close(pos, null_pos) and differs(neg, null_neg)
    # one identity per batch element; n == 1 broadcasts
    per_elem, _ = tm.run(m, ida.with_branch_identities(m.model_options, {0: torch.cat([e_a, e_b])}))
    shared, _ = tm.run(m, ida.with_branch_identities(m.model_options, {0: e_a}))
    shared2, _ = tm.run(m, ida.with_branch_identities(m.model_options, {0: torch.cat([e_a, e_a])}))
    assert close(shared, shared2)
    assert close(per_elem[0], shared[0]) and differs(per_elem[1], shared[1])
    # only element 1 of the positive branch carries an identity: nothing else moves
    mixed, mixed_neg = tm.run(m, ida.with_branch_identities(m.model_options,
                                                            {0: torch.cat([torch.zeros(1, 512), e_b])}))
    assert close(mixed[0], null_pos[0], 1e-5) and differs(mixed[1], null_pos[1]) and close(mixed_neg, null_neg)
    with pytest.raises(ValueError, match="has 3 embeddings"):
        tm.run(m, ida.with_branch_identities(m.model_options, {0: torch.zeros(3, 512)}))


def test_null_identity_in_both_branches(tm, ida):
    m = ida.apply_id_adapter(tm.model, tm.adapter)
    none_pos, none_neg = tm.run(m, same_text=True)
    z = torch.zeros(1, 512)
    zero_pos, zero_neg = tm.run(m, ida.with_branch_identities(m.model_options, {0: z, 1: z}), same_text=True)
    assert close(zero_pos, none_pos, 1e-5) and close(zero_neg, none_neg, 1e-5)
    assert close(none_pos, none_neg)  # both branches see identical (null) tokens
    empty_pos, _ = tm.run(m, ida.with_branch_identities(m.model_options, {}))
    assert close(empty_pos, none_pos)
    # the null identity is not "adapter off": its learned tokens move the output
    off_pos, _ = tm.run(ida.apply_id_adapter(tm.model, tm.adapter, weight=0.0), same_text=True)
    assert differs(none_pos, off_pos)


def test_weight_and_lora_zero_equal_the_unpatched_model(tm, ida):
    base = tm.run(tm.model)
    zero = tm.run(ida.apply_id_adapter(tm.model, tm.adapter, weight=0.0, lora_strength=0.0,
                                       identities={0: tm.e[:1]}))
    assert close(zero[0], base[0]) and close(zero[1], base[1])
    ident = tm.run(ida.apply_id_adapter(tm.model, tm.adapter, weight=1.0, lora_strength=0.0,
                                        identities={0: tm.e[:1]}))
    assert differs(ident[0], base[0])


def test_apply_time_identity_is_index_0_and_transformer_options_replace_it(sd15, ida):
    m_id = ida.apply_id_adapter(sd15.model, sd15.adapter, identities={0: sd15.e[:1]})
    m = ida.apply_id_adapter(sd15.model, sd15.adapter)
    via_apply = sd15.run(m_id)
    via_options = sd15.run(m, ida.with_branch_identities(m.model_options, {0: sd15.e[:1]}))
    assert close(via_apply[0], via_options[0]) and close(via_apply[1], via_options[1])
    # an empty map in transformer_options (the inversion's null_identity_model) means null everywhere
    null = sd15.run(m)
    emptied = sd15.run(m_id, ida.with_branch_identities(m_id.model_options, {}))
    assert close(emptied[0], null[0]) and close(emptied[1], null[1])


def test_cond_or_uncond_order_is_followed(sd15, ida):
    """Chunks in calc_cond_batch come in either order; the patch reads cond_or_uncond, not the position."""
    m = ida.apply_id_adapter(sd15.model, sd15.adapter, lora_strength=0.0)
    x = sd15.x[:1]
    to = dict(m.model_options["transformer_options"])
    to[ida.IDENTITY_KEY] = ida.branch_identities({1: sd15.e[:1]})
    ctx = torch.cat([sd15.ctx, sd15.ctx])
    outs = {}
    with loaded(m), torch.no_grad():
        for order in ([0, 1], [1, 0]):
            t = dict(to, cond_or_uncond=order, sigmas=torch.tensor([3.0, 3.0]))
            outs[tuple(order)] = m.model.apply_model(torch.cat([x, x]), torch.tensor([3.0, 3.0]), c_crossattn=ctx,
                                                     transformer_options=t)
    a, b = outs[(0, 1)], outs[(1, 0)]
    assert close(a[0], b[1]) and close(a[1], b[0]) and differs(a[0], a[1])
    to[ida.IDENTITY_KEY] = {1: sd15.e[:1]}  # a bare dict: the value is made by with_branch_identities
    with loaded(m), torch.no_grad(), pytest.raises(TypeError, match="must be a BranchIdentities value"):
        m.model.apply_model(torch.cat([x, x]), torch.tensor([3.0, 3.0]), c_crossattn=ctx,
                            transformer_options=dict(to, cond_or_uncond=[0, 1], sigmas=torch.tensor([3.0, 3.0])))


def test_fp16_weights_converted_and_identities_projected_once_per_run(sd15, ida, tmp_path, monkeypatch):
    """12.4: the published files are fp16; a float32 UNet gets to_k_ip / to_v_ip converted once per run (not at every
    call), and each identity is projected once per run."""
    sd = faceid_state_dict(sd15.layers, rank=8, dtype=torch.float16, seed=11, kv_scale=0.1, lora_scale=0.05)
    adapter = ida.load_id_adapter(write_bin(sd, tmp_path / "tiny_faceid_fp16.bin"))
    m = ida.apply_id_adapter(sd15.model, adapter, identities={0: sd15.e[:1]})
    conversions, projections = [], []
    kv, project = adapter.module.kv, adapter.module.project
    monkeypatch.setattr(adapter.module, "kv", lambda p, device, dtype: conversions.append(p) or kv(p, device, dtype))
    monkeypatch.setattr(adapter.module, "project", lambda e: projections.append(len(e)) or project(e))
    m.model_patches_to(CPU)  # what ComfyUI's model management does when it loads the model for a run
    m.model_patches_to(torch.float32)
    first = [sd15.run(m, sigma=sigma) for sigma in (3.0, 2.0, 1.0)]  # three steps of one run
    cross = sorted(la.processor for la in sd15.layers if la.attn == "attn2")
    assert sorted(conversions) == cross and len(projections) == 2  # the identity and the null identity, once
    m.model_patches_to(CPU)  # the model moves (offloaded, or loaded for the next run): converted again, once
    again = [sd15.run(m, sigma=sigma) for sigma in (3.0, 2.0, 1.0)]
    assert sorted(conversions) == sorted(cross * 2) and len(projections) == 4
    assert all(close(a[0], b[0], tol=0) for a, b in zip(first, again, strict=True))


def test_start_end_percent(sd15, ida):
    ms = sd15.model.get_model_object("model_sampling")
    late = ida.apply_id_adapter(sd15.model, sd15.adapter, lora_strength=0.0, start_percent=0.5, end_percent=1.0,
                                identities={0: sd15.e[:1]})
    off = ida.apply_id_adapter(sd15.model, sd15.adapter, weight=0.0, lora_strength=0.0)
    high = float(ms.percent_to_sigma(0.2))  # early in the schedule: outside [50%, 100%]
    low = float(ms.percent_to_sigma(0.8))

    def eps(m, sigma):  # compare noise predictions: x0 differences shrink with sigma
        return (sd15.x - sd15.run(m, sigma=sigma)[0]) / sigma

    assert close(eps(late, high), eps(off, high))
    assert differs(eps(late, low), eps(off, low))
    with pytest.raises(ValueError, match="start_percent <= end_percent"):
        ida.apply_id_adapter(sd15.model, sd15.adapter, start_percent=0.8, end_percent=0.2)


# -- the model and the options are never mutated; clones are cheap ----------------------------------------------


def test_input_untouched_and_helper_copies(sd15, ida):
    model = sd15.model.clone()
    before_opts = copy.deepcopy(model.model_options)
    before_patches = {k: list(v) for k, v in model.patches.items()}
    weights = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    m = ida.apply_id_adapter(model, sd15.adapter, identities={0: sd15.e[:1]})
    assert m is not model and m.model is model.model
    assert model.model_options == before_opts and model.patches == before_patches
    sd15.run(m)
    for k, v in model.model.diffusion_model.state_dict().items():
        assert torch.equal(v, weights[k]), k  # the LoRA was applied while sampling and removed afterwards
    mo = {"transformer_options": {"patches_replace": {"attn2": {}}, "x": 1}, "other": [1]}
    snapshot = copy.deepcopy(mo)
    new = ida.with_branch_identities(mo, {0: sd15.e[:1], 1: torch.zeros(512)})
    assert mo == snapshot and ida.IDENTITY_KEY not in mo["transformer_options"]
    assert new["transformer_options"][ida.IDENTITY_KEY][1].shape == (1, 512)
    assert new["transformer_options"]["patches_replace"] is not mo["transformer_options"]["patches_replace"]
    with pytest.raises(TypeError, match="cond indices"):
        ida.with_branch_identities(mo, {"positive": sd15.e[:1]})
    with pytest.raises(ValueError, match=r"\[n, 512\]"):
        ida.with_branch_identities(mo, {0: torch.zeros(2, 128)})


def test_clone_is_cheap_and_memory_manager_hooks(sd15, ida):
    m = ida.apply_id_adapter(sd15.model, sd15.adapter)
    t = time.perf_counter()
    c = m.clone()
    assert time.perf_counter() - t < 0.5
    pa = m.model_options["transformer_options"]["patches_replace"]["attn2"]
    pc = c.model_options["transformer_options"]["patches_replace"]["attn2"]
    for key in pa:
        assert pc[key] is not pa[key] and pc[key].state.adapter.module is pa[key].state.adapter.module
    assert sd15.adapter.patcher in m.model_patches_models()
    m.model_patches_to(CPU)
    m.model_patches_to(torch.float32)
    assert all(isinstance(p, ida.FaceIDAttn2Patch) for p in pa.values())
    assert close(sd15.run(c)[0], sd15.run(m)[0])


# -- chaining to another pack's patch -------------------------------------------------------------------------------


class ForeignPatch:
    """Stands in for another pack's attn2 replace patch: text attention plus a constant. ModelPatcher.clone
    deep-copies it, so calls are counted per name in a class-level counter."""

    calls: dict = {}

    def __init__(self, name):
        self.name = name

    def __call__(self, q, k, v, extra):
        import comfy.ldm.modules.attention as attention

        ForeignPatch.calls[self.name] = ForeignPatch.calls.get(self.name, 0) + 1
        return attention.optimized_attention(q, k, v, extra["n_heads"]) + 0.05


def test_existing_patch_is_chained_not_overwritten(sd15, ida):
    cross = [la for la in sd15.layers if la.attn == "attn2"]
    first, second = cross[0], cross[-2]
    base = sd15.model.clone()
    base.set_model_attn2_replace(ForeignPatch("three"), first.block[0], first.block[1], first.transformer_index)
    base.set_model_attn2_replace(ForeignPatch("two"), second.block[0], second.block[1])  # 2-tuple key
    m = ida.apply_id_adapter(base, sd15.adapter, weight=0.0, lora_strength=0.0)
    reg = m.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert reg[first.patch_key].previous.name == "three" and reg[second.patch_key].previous.name == "two"
    ours = [p for p in reg.values() if isinstance(p, ida.FaceIDAttn2Patch)]
    assert len(ours) == 7 and sum(isinstance(p.previous, ForeignPatch) for p in ours) == 2
    ForeignPatch.calls.clear()
    out = sd15.run(m)
    assert ForeignPatch.calls == {"three": 1, "two": 1}  # still called, through our patch
    assert close(out[0], sd15.run(base)[0])  # weight 0: exactly the foreign patches' output
    with_id = sd15.run(ida.apply_id_adapter(base, sd15.adapter, lora_strength=0.0, identities={0: sd15.e[:1]}))
    assert differs(with_id[0], out[0])
    # a second FaceAnon patch stacks on the first
    twice = ida.apply_id_adapter(ida.apply_id_adapter(sd15.model, sd15.adapter, lora_strength=0.0),
                                 sd15.adapter, weight=0.0, lora_strength=0.0)
    once = ida.apply_id_adapter(sd15.model, sd15.adapter, lora_strength=0.0)
    assert close(sd15.run(twice)[0], sd15.run(once)[0])


# -- the LoRA through ComfyUI's weight patching ---------------------------------------------------------------------


def _patched_weights(patcher):
    with loaded(patcher):
        return {k: v.clone() for k, v in patcher.model.diffusion_model.state_dict().items()}


def test_lora_changes_exactly_the_weights_it_names(tm, ida):
    strength = 0.7
    m = ida.apply_id_adapter(tm.model, tm.adapter, lora_strength=strength)
    before = {k: v.clone() for k, v in tm.model.model.diffusion_model.state_dict().items()}
    after = _patched_weights(m)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    targets = {la.weight_key(p, "") for la in tm.layers for p in CF.LORA_PROJECTIONS}
    assert changed == targets and len(targets) == 4 * len(tm.layers)
    ip = tm.sd["ip_adapter"]
    for la in tm.layers:
        for p in CF.LORA_PROJECTIONS:
            key = la.weight_key(p, "")
            delta = strength * ip[f"{la.processor}.{p}_lora.up.weight"] @ ip[f"{la.processor}.{p}_lora.down.weight"]
            assert torch.allclose(after[key] - before[key], delta, atol=1e-6), key
    # restored exactly after sampling
    for k, v in tm.model.model.diffusion_model.state_dict().items():
        assert torch.equal(v, before[k])


def test_separate_lora_file_equals_embedded(tm, ida, tmp_path):
    paths = diffusers_attention_paths(dict(tm.model.model.model_config.unet_config), tm.layers)
    lora_path = write_safetensors(kohya_lora_state_dict(tm.sd, paths), tmp_path / "faceid_lora.safetensors")
    separate = ida.load_id_adapter(tm.path, lora_path)
    a = _patched_weights(ida.apply_id_adapter(tm.model, separate, lora_strength=0.5))
    b = _patched_weights(ida.apply_id_adapter(tm.model, tm.adapter, lora_strength=0.5))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # the processor-index form of the same LoRA (as in the .bin) is accepted as a separate file too
    own = {k: v for k, v in tm.sd["ip_adapter"].items() if "_lora." in k}
    own_path = write_safetensors(own, tmp_path / "faceid_lora_own.safetensors")
    c = _patched_weights(ida.apply_id_adapter(tm.model, ida.load_id_adapter(tm.path, own_path), lora_strength=0.5))
    assert all(torch.allclose(c[k], b[k], atol=1e-6) for k in c)


def test_unmapped_lora_key_is_an_error(sd15, ida, tmp_path):
    paths = diffusers_attention_paths(dict(sd15.model.model.model_config.unet_config), sd15.layers)
    lora = kohya_lora_state_dict(sd15.sd, paths)
    lora["lora_unet_down_blocks_9_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"] = torch.zeros(32, 8)
    lora["lora_unet_down_blocks_9_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"] = torch.zeros(8, 32)
    path = write_safetensors(lora, tmp_path / "bad_lora.safetensors")
    with pytest.raises(ValueError, match=r"bad_lora.safetensors: 1 of \d+ LoRA weights map to no weight"):
        ida.apply_id_adapter(sd15.model, ida.load_id_adapter(sd15.path, path))
    own = {k: v for k, v in sd15.sd["ip_adapter"].items() if "_lora." in k}
    own["99.to_q_lora.up.weight"], own["99.to_q_lora.down.weight"] = torch.zeros(32, 8), torch.zeros(8, 32)
    path = write_safetensors(own, tmp_path / "bad_own_lora.safetensors")
    with pytest.raises(ValueError, match=r"bad_own_lora.safetensors: LoRA processors \[99\]"):
        ida.apply_id_adapter(sd15.model, ida.load_id_adapter(sd15.path, path))


# -- family checks --------------------------------------------------------------------------------------------------


def test_tiny_family_mismatch_is_refused(host, ida, tiny, sd15, tmp_path):
    sdxl_model = tiny.build_model_patcher(tiny.SDXL_TINY_UNET, family="sdxl", seed=1)
    with pytest.raises(ValueError) as e:
        ida.apply_id_adapter(sdxl_model, sd15.adapter)
    msg = str(e.value)
    assert "tiny_faceid_sd15.bin" in msg and "14 attention layers" in msg and "22 attention layers" in msg, msg


@pytest.fixture(scope="module")
def full_size(host):
    """Full-size SD1.5 and SDXL ModelPatchers on the meta device (real layout, no memory, no compute)."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    from dev.tiny_models import SD15_SHALLOW_UNET

    common = {k: SD15_SHALLOW_UNET[k] for k in ("in_channels", "out_channels", "use_spatial_transformer", "legacy",
                                                 "image_size", "use_checkpoint", "dims", "use_temporal_resblock",
                                                 "use_temporal_attention")}
    out = {}
    for family, cfg, cls, base in (
            ("SD1.5", dict(SD15_UNET, adm_in_channels=None, use_linear_in_transformer=False, num_heads=8,
                           num_head_channels=-1), comfy.supported_models.SD15, comfy.model_base.BaseModel),
            ("SDXL", dict(SDXL_UNET, adm_in_channels=2816, num_classes="sequential",
                          use_linear_in_transformer=True, num_heads=-1, num_head_channels=64),
             comfy.supported_models.SDXL, comfy.model_base.SDXL)):
        model = base(cls(dict(common, **cfg)), device=torch.device("meta"))
        out[family] = comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)
    return out


def _meta_adapter(ida, family):
    layers = layout_from_unet_config(SD15_UNET if family == "SD1.5" else SDXL_UNET)
    name = {"SD1.5": "ip-adapter-faceid_sd15.bin", "SDXL": "ip-adapter-faceid_sdxl.bin"}[family]
    weights = ida.faceid.faceid_from_state_dict(faceid_state_dict(layers, device="meta"), name)
    return ida.LoadedIDAdapter(weights)


@pytest.mark.parametrize("family", ["SD1.5", "SDXL"])
def test_full_size_every_key_maps_and_every_attn2_is_patched(full_size, ida, family):
    model = full_size[family]
    adapter = _meta_adapter(ida, family)
    assert adapter.info.family == family
    m = ida.apply_id_adapter(model, adapter)
    n_proc = {"SD1.5": 32, "SDXL": 140}[family]
    assert len(m.patches) == 4 * n_proc  # every embedded LoRA pair became a ComfyUI weight patch
    assert all(k.startswith("diffusion_model.") and k.endswith(("to_q.weight", "to_k.weight", "to_v.weight",
                                                                 "to_out.0.weight")) for k in m.patches)
    reg = m.model_options["transformer_options"]["patches_replace"]["attn2"]
    attn2_modules = [n for n, _ in model.model.diffusion_model.named_modules() if n.endswith(".attn2")]
    assert len(reg) == len(attn2_modules) == n_proc // 2
    assert {k for k in reg if k[0] == "middle"} == {("middle", 0, t) for t in range({"SD1.5": 1, "SDXL": 10}[family])}
    for name in attn2_modules:  # each module's runtime key (as openaimodel/attention.py set it) is patched
        parts = name.split(".")
        block = ("middle", 0) if parts[0] == "middle_block" else (parts[0].split("_")[0], int(parts[1]))
        t = int(parts[parts.index("transformer_blocks") + 1])
        assert (*block, t) in reg, name
        assert reg[(*block, t)].layer.prefix == name[:-len(".attn2")] + ".attn2"
    assert not model.patches and "patches_replace" not in model.model_options["transformer_options"]


def test_full_size_sd15_adapter_on_sdxl_is_refused(full_size, ida):
    with pytest.raises(ValueError) as e:
        ida.apply_id_adapter(full_size["SDXL"], _meta_adapter(ida, "SD1.5"))
    msg = str(e.value)
    for part in ("ip-adapter-faceid_sd15.bin", "for SD1.5", "is SDXL", "ip-adapter-faceid_sdxl.bin"):
        assert part in msg, (part, msg)
    with pytest.raises(ValueError, match=r"ip-adapter-faceid_sdxl.bin is an IP-Adapter FaceID for SDXL.*is SD1\.5"):
        ida.apply_id_adapter(full_size["SD1.5"], _meta_adapter(ida, "SDXL"))


# -- nodes in graphs ------------------------------------------------------------------------------------------------


def test_nodes_registered(host):
    assert {"FaceAnonLoadIDAdapter", "FaceAnonApplyIDAdapter"} <= host.pack_node_ids
    schema = host.nodes.NODE_CLASS_MAPPINGS["FaceAnonApplyIDAdapter"].GET_SCHEMA()
    assert [i.id for i in schema.inputs] == ["model", "id_adapter", "weight", "lora_strength", "start_percent",
                                             "end_percent", "identity"]


@pytest.fixture(scope="module")
def graph_files(host):
    from dev.host import ensure_tiny_sd15_checkpoint
    from dev.tiny_models import SD15_SHALLOW_UNET

    ckpt = ensure_tiny_sd15_checkpoint(host)
    layers = layout_from_unet_config(SD15_SHALLOW_UNET)
    folder = host.models_dir / "ipadapter"
    write_bin(faceid_state_dict(layers, rank=16, dtype=torch.float16, seed=2), folder / "faceanon_tiny_faceid.bin")
    write_safetensors(faceid_state_dict(layers, rank=16, dtype=torch.float16, seed=2),
                      folder / "faceanon_tiny_faceid.safetensors")
    write_bin(faceid_state_dict(layout_from_unet_config(SD15_UNET), seed=4),
              folder / "ip-adapter-faceid_sd15.bin")
    (folder / "faceanon_broken.bin").write_bytes(b"PK\x03\x04 this is not a complete zip")
    return ckpt


def sample_graph(ckpt, adapter=None, lora="embedded (from the adapter file)", weight=1.0):
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a face", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }
    model = ["1", 0]
    if adapter:
        g["5"] = {"class_type": "FaceAnonLoadIDAdapter", "inputs": {"adapter": adapter, "lora": lora}}
        g["6"] = {"class_type": "FaceAnonApplyIDAdapter", "inputs": {
            "model": ["1", 0], "id_adapter": ["5", 0], "weight": weight, "lora_strength": 1.0,
            "start_percent": 0.0, "end_percent": 1.0}}
        model = ["6", 0]
    g["7"] = {"class_type": "KSampler", "inputs": {
        "model": model, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "seed": 1,
        "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}
    g["8"] = {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "faceanon_faceid_test"}}
    return g


def test_graph_loads_and_samples_with_the_adapter(host, graph_files):
    plain = host.run(sample_graph(graph_files))["7"][0]["samples"]
    out = host.run(sample_graph(graph_files, "faceanon_tiny_faceid.bin"))
    adapter = out["5"][0]
    assert adapter.info.variant == "FaceID" and adapter.info.lora_rank == 16
    assert "14 attention layers" in adapter.info.family
    patched = out["7"][0]["samples"]
    assert torch.isfinite(patched).all() and differs(patched, plain)
    again = host.run(sample_graph(graph_files, "faceanon_tiny_faceid.safetensors"))["7"][0]["samples"]
    assert torch.allclose(again, patched, atol=1e-5)  # .safetensors conversion = same adapter


def test_graph_errors_name_the_file(host, graph_files):
    from dev.host import HostRunError

    with pytest.raises(HostRunError, match=r"ip-adapter-faceid_sd15.bin is an IP-Adapter FaceID for SD1\.5.*14 "
                                           r"attention layers"):
        host.run(sample_graph(graph_files, "ip-adapter-faceid_sd15.bin"))
    with pytest.raises(HostRunError, match="faceanon_broken.bin: cannot read it"):
        host.run(sample_graph(graph_files, "faceanon_broken.bin"))


def test_apply_node_identity_input(sd15, host):
    """The node's optional identity (a FACEANON_IDENTITY from FaceAnonFaceIdentity) is the positive branch's."""
    node = host.nodes.NODE_CLASS_MAPPINGS["FaceAnonApplyIDAdapter"]
    ida = host.pack("nodes.id_adapter")
    identity_cls = host.pack("faceanon.faces.types").Identity
    direct = sd15.run(ida.apply_id_adapter(sd15.model, sd15.adapter, identities={0: sd15.e[:1]}))
    for identity in (identity_cls(embeddings=sd15.e[:1], sources=("test",)), {"embedding": sd15.e[0].numpy()}):
        out = node.execute(model=sd15.model, id_adapter=sd15.adapter, identity=identity)
        m = out.result[0] if hasattr(out, "result") else out[0]
        got = sd15.run(m)
        assert close(got[0], direct[0]) and close(got[1], direct[1])
    with pytest.raises(TypeError, match="cannot read ArcFace embeddings"):
        ida.identity_embeddings(object())
