"""One patched cross-attention layer of the real UNet, checked against IP-Adapter's formula computed independently:
``to_out(Attn(q, k_text, v_text) + weight * Attn(q, tokens W_k_ip^T, tokens W_v_ip^T))``, where the identity tokens are
the file's projection (Linear, GELU, Linear, LayerNorm) of the branch's embedding (zero for the null identity) and
Attn is written out (softmax(q k^T / sqrt(d)) v per head). A negated or scaled identity term fails it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.test_faceid_host import Tiny

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHT = 0.8


@pytest.fixture(scope="module")
def ida(host):
    return host.pack("nodes.id_adapter")


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def tm(request, host, ida, tmp_path_factory):
    from dev import tiny_models

    return Tiny(host, ida, tiny_models, request.param, tmp_path_factory.mktemp(f"attention_{request.param}"))


def attention(q, k, v, heads):
    """softmax(q k^T / sqrt(d)) v per head; q [B, Nq, heads*d], k/v [B, Nk, heads*d]."""
    b, nq, inner = q.shape
    d = inner // heads
    qh, kh, vh = (t.reshape(b, t.shape[1], heads, d).permute(0, 2, 1, 3).double() for t in (q, k, v))
    w = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1)
    return (w @ vh).permute(0, 2, 1, 3).reshape(b, nq, inner)


def identity_tokens(image_proj: dict, embeds: torch.Tensor, num_tokens: int = 4) -> torch.Tensor:
    """The FaceID projection from the file's tensors: Linear 512->1024, GELU, Linear 1024->T*C, LayerNorm C."""
    p = {k: v.double() for k, v in image_proj.items()}
    h = F.gelu(embeds.double() @ p["proj.0.weight"].T + p["proj.0.bias"])
    t = (h @ p["proj.2.weight"].T + p["proj.2.bias"]).reshape(embeds.shape[0], num_tokens, -1)
    return F.layer_norm(t, (t.shape[-1],), p["norm.weight"], p["norm.bias"], eps=1e-5)


def test_patched_cross_attention_is_text_plus_weight_times_identity_attention(tm, ida):
    from faceanon.faceid import ID_DIM

    model = ida.apply_id_adapter(tm.model, tm.adapter, weight=WEIGHT)
    layer = [la for la in tm.layers if la.attn == "attn2"][-1]  # the deepest one: the middle block
    module = model.model.diffusion_model.get_submodule(layer.prefix)
    captured, order = {}, []

    def keep(name):
        def hook(mod, inputs, output):
            captured[name] = (inputs[0].detach(), output.detach())
            if name == "to_out":  # the weights as sampling has them (the FaceID LoRA patched in)
                captured["out_weights"] = (mod[0].weight.detach().clone(), mod[0].bias.detach().clone())
        return hook

    hooks = [getattr(module, n).register_forward_hook(keep(n)) for n in ("to_q", "to_k", "to_v", "to_out")]

    def spy(apply_model, args):
        order.append(list(args["cond_or_uncond"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(spy)
    e = tm.e  # one identity per latent in branch 0, the null identity in branch 1
    try:
        tm.run(model, ida.with_branch_identities(model.model_options, {0: e}))
    finally:
        for h in hooks:
            h.remove()
    assert order == [order[0]] and sorted(order[0]) == [0, 1]  # one batched call holding both branches
    q, k, v = (captured[n][1] for n in ("to_q", "to_k", "to_v"))
    inner, out = captured["to_out"]
    heads = module.heads
    per = q.shape[0] // 2
    ip = tm.sd["ip_adapter"]
    w_k, w_v = (ip[f"{layer.processor}.{n}.weight"].double() for n in ("to_k_ip", "to_v_ip"))
    embeds = torch.cat([e if c == 0 else torch.zeros(per, ID_DIM) for c in order[0]])
    tokens = identity_tokens(tm.sd["image_proj"], embeds)
    text = attention(q, k, v, heads)
    ident = attention(q, tokens @ w_k.T, tokens @ w_v.T, heads)
    expected = text + WEIGHT * ident
    scale = float(expected.abs().max())
    assert float((inner.double() - expected).abs().max()) < 1e-5 * scale
    # the layer's output: to_out of that sum
    w_out, b_out = (t.double() for t in captured["out_weights"])
    assert float((out.double() - (expected @ w_out.T + b_out)).abs().max()) < 1e-5 * scale
    # the identity term is far above the tolerance: a negated or tripled term, or the null identity in branch 0,
    # would fail the check above
    for wrong in (text - WEIGHT * ident, text + 3 * WEIGHT * ident):
        assert float((wrong - expected).abs().max()) > 1e-2 * scale
    null = identity_tokens(tm.sd["image_proj"], torch.zeros_like(embeds))
    as_null = text + WEIGHT * attention(q, null @ w_k.T, null @ w_v.T, heads)
    assert float((as_null - expected).abs().max()) > 1e-3 * scale

