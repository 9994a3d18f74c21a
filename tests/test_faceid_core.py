"""Host-independent tests of faceanon.faceid: file layout, inspection, errors, projection, attention, branch tokens."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from faceanon import faceid
from faceanon.faceid.files import IMAGE_PROJ_KEYS
from dev.faceid_files import (
    SD15_UNET,
    SDXL_UNET,
    faceid_state_dict,
    flat,
    kohya_lora_state_dict,
    layout_from_unet_config,
    write_bin,
    write_safetensors,
)

SD15_LAYERS = layout_from_unet_config(SD15_UNET)
SDXL_LAYERS = layout_from_unet_config(SDXL_UNET)
TINY_CFG = {"model_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": [1, 1, 1],
            "transformer_depth": [1, 1, 0], "transformer_depth_middle": 1,
            "transformer_depth_output": [1, 1, 1, 1, 0, 0], "context_dim": 48}
TINY_LAYERS = layout_from_unet_config(TINY_CFG)


@pytest.fixture(scope="module")
def sd15_sd():
    return faceid_state_dict(SD15_LAYERS, dtype=torch.float16, seed=1)


@pytest.fixture(scope="module")
def sdxl_meta_sd():
    return faceid_state_dict(SDXL_LAYERS, dtype=torch.float16, device="meta")


def tiny_sd(seed=0, **kw):
    kw.setdefault("rank", 4)
    return faceid_state_dict(TINY_LAYERS, dtype=torch.float32, seed=seed, **kw)


# -- the layer map ------------------------------------------------------------------------------------------------


def test_sd15_processor_map_is_down_up_mid():
    assert len(SD15_LAYERS) == 32
    cross = [la for la in SD15_LAYERS if la.attn == "attn2"]
    assert [la.processor for la in cross] == list(range(1, 32, 2))
    got = {la.processor: (la.patch_key, la.width) for la in cross}
    assert got[1] == (("input", 1, 0), 320)
    assert got[11] == (("input", 8, 0), 1280)
    assert got[13] == (("output", 3, 0), 1280)
    assert got[29] == (("output", 11, 0), 320)
    assert got[31] == (("middle", 0, 0), 1280)  # the mid block is LAST, and ComfyUI calls it ("middle", 0)
    assert [la.block for la in cross] == ([("input", i) for i in (1, 2, 4, 5, 7, 8)]
                                          + [("output", i) for i in range(3, 12)] + [("middle", 0)])
    assert SD15_LAYERS[0].prefix == "input_blocks.1.1.transformer_blocks.0.attn1"
    assert (SD15_LAYERS[1].weight_key("to_out")
            == "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_out.0.weight")
    assert {la.context_dim for la in cross} == {768}


def test_sdxl_processor_map():
    assert len(SDXL_LAYERS) == 140
    cross = {la.processor: la for la in SDXL_LAYERS if la.attn == "attn2"}
    assert len(cross) == 70
    assert cross[1].patch_key == ("input", 4, 0) and cross[1].width == 640
    assert cross[3].patch_key == ("input", 4, 1)
    assert cross[9].patch_key == ("input", 7, 0) and cross[9].width == 1280
    assert cross[49].patch_key == ("output", 0, 0)
    assert cross[107].patch_key == ("output", 2, 9)
    assert cross[109].patch_key == ("output", 3, 0) and cross[109].width == 640
    assert [cross[i].patch_key for i in range(121, 140, 2)] == [("middle", 0, t) for t in range(10)]
    assert len({la.patch_key for la in cross.values()}) == 70


def test_layout_from_shapes_ignores_other_weights_and_keeps_order():
    shapes = {"diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3), "cond_stage_model.x": (1,)}
    for la in reversed(TINY_LAYERS):
        shapes[la.weight_key("to_q")] = (la.width, la.width)
        shapes[la.weight_key("to_k")] = (la.width, la.context_dim)
    assert faceid.layout_from_shapes(shapes) == TINY_LAYERS


# -- full-size files: keys, shapes, every key consumed ------------------------------------------------------------


def consumed_keys(weights: faceid.FaceIDWeights, layers) -> set[str]:
    keys = {f"image_proj.{k}" for k in IMAGE_PROJ_KEYS}
    for la in layers:
        if la.attn == "attn2":
            keys |= {f"ip_adapter.{la.processor}.to_k_ip.weight", f"ip_adapter.{la.processor}.to_v_ip.weight"}
    targets = faceid.embedded_lora_targets(weights, layers)
    by_key = {id(p.up): k for k, p in targets.items()}
    for (i, p), (up, _down) in weights.lora_pairs().items():
        la = next(x for x in layers if x.processor == i)
        assert by_key[id(up)] == la.weight_key(p)  # the pair went to its own layer's weight
        keys |= {f"ip_adapter.{i}.{p}_lora.up.weight", f"ip_adapter.{i}.{p}_lora.down.weight"}
    return keys


@pytest.mark.parametrize("family", ["SD1.5", "SDXL"])
def test_full_size_files_every_key_consumed(family, sd15_sd, sdxl_meta_sd):
    sd, layers = (sd15_sd, SD15_LAYERS) if family == "SD1.5" else (sdxl_meta_sd, SDXL_LAYERS)
    w = faceid.faceid_from_state_dict(sd, f"ip-adapter-faceid_{family}.bin")
    info = w.info
    n_keys, n_params, n_proc, c = {"SD1.5": (294, 48_354_816, 32, 768),
                                    "SDXL": (1266, 535_507_968, 140, 2048)}[family]
    assert (info.variant, info.family, info.num_tokens, info.cross_dim) == ("FaceID", family, 4, c)
    assert (info.num_keys, info.num_params, info.num_processors, info.lora_rank) == (n_keys, n_params, n_proc, 128)
    assert info.dtype == torch.float16
    faceid.check_compatible(w, layers)
    assert consumed_keys(w, layers) == set(flat(sd))
    targets = faceid.embedded_lora_targets(w, layers)
    assert len(targets) == 4 * n_proc
    for key, pair in targets.items():  # every LoRA product has the shape of the weight it patches
        la = next(x for x in layers if key.startswith("diffusion_model." + x.prefix + "."))
        proj = key.split(".")[-2] if not key.endswith("to_out.0.weight") else "to_out"
        expect_in = la.context_dim if proj in ("to_k", "to_v") else la.width
        assert (pair.up.shape[0], pair.down.shape[1]) == (la.width, expect_in)


def test_comfy_module_order_numbering_is_refused(sd15_sd):
    """Numbering processors in ComfyUI's module order (middle block between input and output) gives wrong shapes
    at 6 of 32 SD1.5 processors and 24 of 140 SDXL ones (model_files.md); the check must catch it."""
    for layers, expected in ((SD15_LAYERS, 6), (SDXL_LAYERS, 24)):
        order = {"input": 0, "middle": 1, "output": 2}
        comfy_order = sorted(layers, key=lambda la: (order[la.block[0]], la.block[1], la.transformer_index, la.attn))
        renumbered = [faceid.AttentionLayer(i, la.attn, la.block, la.transformer_index, la.prefix, la.width,
                                            la.context_dim) for i, la in enumerate(comfy_order)]
        w = faceid.faceid_from_state_dict(faceid_state_dict(renumbered, device="meta"), "wrong_order.bin")
        wrong = sum(1 for a, b in zip(layers, renumbered, strict=True) if a.width != b.width)
        assert wrong == expected
        with pytest.raises(faceid.FaceIDMismatchError, match="wrong_order.bin"):
            faceid.check_compatible(w, layers)


def test_sd15_file_on_sdxl_layout_is_refused_with_names(sd15_sd):
    w = faceid.faceid_from_state_dict(sd15_sd, "ip-adapter-faceid_sd15.bin")
    with pytest.raises(faceid.FaceIDMismatchError) as e:
        faceid.check_compatible(w, SDXL_LAYERS, model_name="my_sdxl.safetensors")
    msg = str(e.value)
    for part in ("ip-adapter-faceid_sd15.bin", "for SD1.5", "is SDXL", "my_sdxl.safetensors",
                 "ip-adapter-faceid_sdxl.bin", "32 attention", "140 attention"):
        assert part in msg, (part, msg)


def test_sdxl_file_on_sd15_layout_is_refused(sdxl_meta_sd):
    w = faceid.faceid_from_state_dict(sdxl_meta_sd, "ip-adapter-faceid_sdxl.bin")
    with pytest.raises(faceid.FaceIDMismatchError, match=r"for SDXL.*is SD1\.5.*ip-adapter-faceid_sd15\.bin"):
        faceid.check_compatible(w, SD15_LAYERS)


# -- reading files -------------------------------------------------------------------------------------------------


def test_bin_and_safetensors_round_trip(tmp_path, sd15_sd):
    b = faceid.load_faceid_file(write_bin(sd15_sd, tmp_path / "ip-adapter-faceid_sd15.bin"))
    assert b.source == "ip-adapter-faceid_sd15.bin" and b.info.family == "SD1.5" and b.info.num_keys == 294
    for k, v in sd15_sd["ip_adapter"].items():
        assert torch.equal(b.ip_adapter[k], v)
    tiny = tiny_sd(seed=5)
    tb = faceid.load_faceid_file(write_bin(tiny, tmp_path / "tiny.bin"))
    ts = faceid.load_faceid_file(write_safetensors(tiny, tmp_path / "tiny.safetensors"))
    assert tb.info == ts.info
    for part in ("image_proj", "ip_adapter"):
        for k, v in tiny[part].items():
            assert torch.equal(getattr(tb, part)[k], v) and torch.equal(getattr(ts, part)[k], v)


def test_portrait_and_no_lora_variants():
    w = faceid.faceid_from_state_dict(tiny_sd(rank=None, num_tokens=16), "portrait.bin")
    assert (w.info.variant, w.info.num_tokens, w.info.lora_rank) == ("FaceID Portrait", 16, None)
    assert w.lora_pairs() == {} and faceid.embedded_lora_targets(w, TINY_LAYERS) == {}
    assert faceid.faceid_from_state_dict(tiny_sd(rank=None), "x.bin").info.variant == "FaceID (without LoRA)"


class NotATensor:
    pass


def _corrupt_cases(tmp_path):
    good = tiny_sd()
    cases = {}
    p = tmp_path / "truncated.bin"
    write_bin(good, p)
    p.write_bytes(p.read_bytes()[:500])
    cases["truncated.bin"] = "cannot read it"
    (tmp_path / "garbage.bin").write_bytes(b"\x00not a zip at all" * 10)
    cases["garbage.bin"] = "cannot read it"
    p = tmp_path / "truncated.safetensors"
    write_safetensors(good, p)
    p.write_bytes(p.read_bytes()[:300])
    cases["truncated.safetensors"] = "cannot read it as a .safetensors"
    (tmp_path / "empty.safetensors").write_bytes(b"")
    cases["empty.safetensors"] = "cannot read it as a .safetensors"
    with open(tmp_path / "pickled_object.bin", "wb") as f:
        pickle.dump({"image_proj": NotATensor()}, f, protocol=2)
    cases["pickled_object.bin"] = "weights_only"
    torch.save({"a": torch.zeros(1)}, tmp_path / "not_adapter.bin")
    cases["not_adapter.bin"] = "not an IP-Adapter file"
    bad = tiny_sd()
    del bad["ip_adapter"]["3.to_v_ip.weight"]
    write_bin(bad, tmp_path / "missing_key.bin")
    cases["missing_key.bin"] = "processor 3 has"
    bad = tiny_sd()
    bad["ip_adapter"]["5.to_k_ip.weight"] = torch.zeros(64, 47)
    write_bin(bad, tmp_path / "wrong_shape.bin")
    cases["wrong_shape.bin"] = "processor 5"
    bad = tiny_sd()
    bad["image_proj"]["proj.0.weight"] = torch.zeros(1024, 768)
    write_bin(bad, tmp_path / "wrong_proj.bin")
    cases["wrong_proj.bin"] = "proj.0.weight has shape"
    bad = tiny_sd()
    bad["ip_adapter"]["0.to_k_ip.weight"] = torch.zeros(32, 48)
    write_bin(bad, tmp_path / "kv_on_self_attention.bin")
    cases["kv_on_self_attention.bin"] = "processor 0 has"
    bad = tiny_sd()
    bad["ip_adapter"]["7.unexpected.weight"] = torch.zeros(1)
    write_bin(bad, tmp_path / "unknown_key.bin")
    cases["unknown_key.bin"] = "keys a FaceID file does not have"
    bad = tiny_sd()
    for k in [k for k in bad["ip_adapter"] if k.startswith("3.") and "lora" in k]:
        del bad["ip_adapter"][k]
    write_bin(bad, tmp_path / "partial_lora.bin")
    cases["partial_lora.bin"] = "LoRA weights are present for"
    bad = tiny_sd()
    bad["image_proj"]["perceiver_resampler.proj_in.weight"] = torch.zeros(48, 1280)
    write_bin(bad, tmp_path / "ip-adapter-faceid-plusv2_sd15.bin")
    cases["ip-adapter-faceid-plusv2_sd15.bin"] = "FaceID Plus"
    bad = {"image_proj": {"proj.weight": torch.zeros(3072, 1024), "proj.bias": torch.zeros(3072),
                          "norm.weight": torch.zeros(768), "norm.bias": torch.zeros(768)},
           "ip_adapter": {"1.to_k_ip.weight": torch.zeros(320, 768)}}
    write_bin(bad, tmp_path / "ip-adapter_sd15.bin")
    cases["ip-adapter_sd15.bin"] = "CLIP image embeddings"
    kohya = kohya_lora_state_dict(tiny_sd(), {la.processor: f"x.{la.processor}" for la in TINY_LAYERS})
    write_safetensors(kohya, tmp_path / "ip-adapter-faceid_sd15_lora.safetensors")
    cases["ip-adapter-faceid_sd15_lora.safetensors"] = "looks like a LoRA file"
    return cases


def test_corrupt_and_wrong_files_give_clear_errors(tmp_path):
    for name, expected in _corrupt_cases(tmp_path).items():
        with pytest.raises(faceid.FaceIDFileError) as e:
            faceid.load_faceid_file(tmp_path / name)
        assert name in str(e.value), (name, str(e.value))
        assert expected in str(e.value), (name, str(e.value))
    with pytest.raises(faceid.FaceIDFileError, match="no such file"):
        faceid.load_faceid_file(tmp_path / "absent.bin")


def test_split_lora_pairs():
    sd = tiny_sd()
    paths = {la.processor: f"down_blocks.0.attentions.{la.processor}.transformer_blocks.0.{la.attn}"
             for la in TINY_LAYERS}
    pairs = faceid.split_lora_pairs(kohya_lora_state_dict(sd, paths))
    assert len(pairs) == 4 * len(TINY_LAYERS)
    assert all(p.alpha == 4.0 for p in pairs.values())
    assert faceid.processor_lora_pairs(pairs) is None
    own = faceid.split_lora_pairs({k: v for k, v in sd["ip_adapter"].items() if "lora" in k})
    by_proc = faceid.processor_lora_pairs(own)
    assert set(by_proc) == {(la.processor, p) for la in TINY_LAYERS for p in faceid.LORA_PROJECTIONS}
    with pytest.raises(faceid.FaceIDFileError, match="not LoRA"):
        faceid.split_lora_pairs({"a.lora_up.weight": torch.zeros(2, 1), "a.lora_down.weight": torch.zeros(1, 2),
                                 "b.weight": torch.zeros(1)}, "x.safetensors")
    with pytest.raises(faceid.FaceIDFileError, match="incomplete"):
        faceid.split_lora_pairs({"a.lora_up.weight": torch.zeros(2, 1)}, "x.safetensors")


# -- projection, null identity, attention term ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_module():
    return faceid.FaceIDAdapterModule(faceid.faceid_from_state_dict(tiny_sd(seed=3), "tiny.bin"))


def test_projection_matches_the_formula(tiny_module):
    sd = tiny_sd(seed=3)["image_proj"]
    e = torch.randn(3, 512, generator=torch.Generator().manual_seed(0))
    h = torch.nn.functional.gelu(e @ sd["proj.0.weight"].T + sd["proj.0.bias"])
    x = (h @ sd["proj.2.weight"].T + sd["proj.2.bias"]).reshape(3, 4, 48)
    ref = torch.nn.functional.layer_norm(x, (48,), sd["norm.weight"], sd["norm.bias"])
    assert torch.allclose(tiny_module.project(e), ref, atol=1e-5)


def test_null_identity_is_the_projection_of_zero(tiny_module):
    proj = faceid.IdentityProjector(tiny_module)
    null = proj.null_tokens("cpu", torch.float32)
    assert null.shape == (1, 4, 48)
    assert torch.equal(null, tiny_module.project(torch.zeros(1, 512)))
    assert null.abs().mean() > 0.1  # learned non-zero tokens, not "adapter off"
    # it depends on the biases only: changing proj.0.weight leaves it unchanged
    sd = tiny_sd(seed=3)
    sd["image_proj"]["proj.0.weight"] = sd["image_proj"]["proj.0.weight"] * 5 + 1
    other = faceid.FaceIDAdapterModule(faceid.faceid_from_state_dict(sd, "t.bin"))
    assert torch.allclose(other.project(torch.zeros(1, 512)), null)
    assert not torch.allclose(other.project(torch.ones(1, 512)), tiny_module.project(torch.ones(1, 512)))


def test_decoupled_attention_matches_naive():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 10, 24, generator=g)
    k, v = torch.randn(2, 4, 24, generator=g), torch.randn(2, 4, 24, generator=g)
    heads, d = 3, 8
    ref = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / d ** 0.5, -1)
        ref.append(a @ v[..., sl])
    ref = torch.cat(ref, -1)
    assert torch.allclose(faceid.decoupled_attention(q, k, v, heads), ref, atol=1e-5)
    assert torch.allclose(faceid.decoupled_attention(q.half(), k.half(), v.half(), heads, upcast=True).float(), ref,
                          atol=5e-3)
    wk, wv = torch.randn(24, 6, generator=g), torch.randn(24, 6, generator=g)
    tokens = torch.randn(2, 4, 6, generator=g)
    assert torch.allclose(faceid.ip_attention_term(q, tokens, wk, wv, heads),
                          faceid.decoupled_attention(q, tokens @ wk.T, tokens @ wv.T, heads), atol=1e-5)


def test_batch_tokens_follow_cond_or_uncond_and_batch_layout(tiny_module):
    proj = faceid.IdentityProjector(tiny_module)
    g = torch.Generator().manual_seed(1)
    e1, e2 = torch.randn(1, 512, generator=g), torch.randn(2, 512, generator=g)
    null = proj.null_tokens("cpu", torch.float32)[0]
    t1, t2 = tiny_module.project(e1), tiny_module.project(e2)

    out = proj.batch_tokens([0, 1], 4, {0: e1}, "cpu", torch.float32)
    assert out.shape == (4, 4, 48)
    assert torch.equal(out[0], t1[0]) and torch.equal(out[1], t1[0])
    assert torch.equal(out[2], null) and torch.equal(out[3], null)

    out = proj.batch_tokens([1, 0], 4, {0: e1, 1: e2}, "cpu", torch.float32)  # chunks in reversed order
    assert torch.equal(out[0], t2[0]) and torch.equal(out[1], t2[1])  # one identity per element
    assert torch.equal(out[2], t1[0]) and torch.equal(out[3], t1[0])

    out = proj.batch_tokens([0, 1, 0], 3, None, "cpu", torch.float32)
    assert all(torch.equal(out[i], null) for i in range(3))
    out = proj.batch_tokens([0, 1], 2, {0: torch.zeros(1, 512), 1: torch.zeros(1, 512)}, "cpu", torch.float32)
    assert torch.allclose(out[0], null, atol=1e-6) and torch.allclose(out[1], null, atol=1e-6)

    with pytest.raises(ValueError, match="has 3 embeddings, but each guidance chunk of this batch has 2"):
        proj.batch_tokens([0, 1], 4, {0: torch.zeros(3, 512)}, "cpu", torch.float32)
    with pytest.raises(ValueError, match="cannot be split"):
        proj.batch_tokens([0, 1], 3, {}, "cpu", torch.float32)
    with pytest.raises(ValueError, match=r"shape \[n, 512\], got \[1, 511\]"):
        proj.batch_tokens([0], 1, {0: torch.zeros(1, 511)}, "cpu", torch.float32)


def test_identities_are_one_immutable_value(tiny_module):
    e = torch.randn(1, 512)
    value = faceid.BranchIdentities({0: e, 1: None})
    assert len(value) == 1 and 0 in value and 1 not in value and torch.equal(value[0], e)
    assert value == faceid.BranchIdentities({0: e.clone().double()})
    assert hash(value) == hash(faceid.BranchIdentities({0: e}))
    assert value != faceid.BranchIdentities({1: e}) and value != faceid.BranchIdentities({0: 2 * e})
    assert copy.deepcopy(value) is value
    proj = faceid.IdentityProjector(tiny_module)
    a = proj.batch_tokens([0, 1], 2, value, "cpu", torch.float32)
    e.mul_(-1)  # the caller's tensor changes in place: the value (a copy) does not
    value[0].mul_(5)  # nor does a tensor read from it
    b = proj.batch_tokens([0, 1], 2, value, "cpu", torch.float32)
    assert b is a and torch.allclose(a[0], tiny_module.project(-e)[0])
    changed = proj.batch_tokens([0, 1], 2, faceid.BranchIdentities({0: e}), "cpu", torch.float32)
    assert torch.allclose(changed[0], tiny_module.project(e)[0]) and not torch.allclose(changed[0], a[0])
    half = proj.batch_tokens([0, 1], 2, value, "cpu", torch.float16)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), a, atol=1e-2)
    with pytest.raises(TypeError, match="cond indices"):
        faceid.BranchIdentities({"positive": e})
    with pytest.raises(TypeError, match="must be a dict"):
        faceid.BranchIdentities([e])


def test_identity_tokens_are_projected_once_per_run(tiny_module, monkeypatch):
    calls = []
    project = tiny_module.project
    monkeypatch.setattr(tiny_module, "project", lambda embeds: calls.append(len(embeds)) or project(embeds))
    proj = faceid.IdentityProjector(tiny_module)
    value = faceid.BranchIdentities({0: torch.randn(1, 512)})
    for step in range(30):  # a run: the same value at every step, 2 to 4 branches (the mask gate's extra ones)
        chunks = [0, 1] if step < 10 else [0, 1, 2, 3]
        proj.batch_tokens(chunks, 2 * len(chunks), value, "cpu", torch.float32)
        proj.batch_tokens(chunks, 2 * len(chunks), faceid.BranchIdentities({0: value[0]}), "cpu", torch.float32)
    assert calls == [1, 1]  # the identity once and the null identity once
    proj.clear()  # ComfyUI moved the model: the next run projects again, once
    proj.batch_tokens([0, 1], 2, value, "cpu", torch.float32)
    assert calls == [1, 1, 1, 1]


def test_kv_weights_are_converted_once_per_run(monkeypatch):
    sd = faceid_state_dict(TINY_LAYERS, dtype=torch.float16, seed=3, rank=4)  # the published files are fp16
    module = faceid.FaceIDAdapterModule(faceid.faceid_from_state_dict(sd, "tiny_fp16.bin"))
    calls = []
    kv = module.kv
    monkeypatch.setattr(module, "kv", lambda p, device, dtype: calls.append((p, dtype)) or kv(p, device, dtype))
    cast = faceid.CastWeights(module)
    processors = list(range(1, module.info.num_processors, 2))
    file_dtype = module.to_k_ip[str(processors[0])].weight.dtype
    for _ in range(5):  # five UNet calls of a float32 run over fp16 weights
        for p in processors:
            k, v = cast.kv(p, "cpu", torch.float32)
            assert k.dtype == v.dtype == torch.float32
            assert torch.equal(k, module.to_k_ip[str(p)].weight.float())
    assert calls == [(p, torch.float32) for p in processors] and file_dtype == torch.float16
    cast.kv(processors[0], "cpu", file_dtype)  # another target: converted again, the float32 copies dropped
    assert calls[-1] == (processors[0], file_dtype) and len(cast._kv) == 1
    assert cast.kv(processors[0], "cpu", file_dtype)[0] is module.to_k_ip[str(processors[0])].weight
    cast.clear()
    assert cast._kv == {}


def test_inference_mode_identities(tiny_module):
    """ComfyUI runs nodes under torch.inference_mode: such tensors make values too."""
    proj = faceid.IdentityProjector(tiny_module)
    with torch.inference_mode():
        e = torch.randn(1, 512)
        value = faceid.BranchIdentities({0: e})
        out = proj.batch_tokens([0, 1], 2, value, "cpu", torch.float32)
        assert proj.batch_tokens([0, 1], 2, value, "cpu", torch.float32) is out
    assert torch.allclose(out[0], tiny_module.project(e)[0])


def test_as_embeddings():
    assert faceid.as_embeddings([0.0] * 512).shape == (1, 512)
    assert faceid.as_embeddings(torch.zeros(3, 512, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match="512"):
        faceid.as_embeddings(torch.zeros(2, 256))
