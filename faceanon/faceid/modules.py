"""The FaceID modules used at sampling time: the projection, the adapter module holding the per-layer
``to_k_ip`` / ``to_v_ip`` weights, and the decoupled cross-attention term ``softmax(q k_ip^T / sqrt(d)) v_ip``."""

from __future__ import annotations

import math

import torch
from torch import nn

from .files import ID_DIM, PROJ_HIDDEN, FaceIDWeights


class FaceIDProjection(nn.Module):
    """ArcFace embedding [n, 512] -> identity tokens [n, T, C]: Linear 512->1024, GELU, Linear 1024->T*C, LayerNorm C.
    Parameter names match the files' image_proj (proj.0, proj.2, norm)."""

    def __init__(self, cross_dim: int, num_tokens: int = 4, id_dim: int = ID_DIM, hidden: int = PROJ_HIDDEN):
        super().__init__()
        self.cross_dim, self.num_tokens = cross_dim, num_tokens
        self.proj = nn.Sequential(nn.Linear(id_dim, hidden), nn.GELU(), nn.Linear(hidden, num_tokens * cross_dim))
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        x = self.proj(embeds).reshape(-1, self.num_tokens, self.cross_dim)
        return self.norm(x)


class FaceIDAdapterModule(nn.Module):
    """The FaceID weights used at sampling time: the projection (kept in float32: it is small and runs once per
    identity) and, per cross-attention processor i, ``to_k_ip[str(i)]`` / ``to_v_ip[str(i)]`` (Linear C -> H, no
    bias, in the file's dtype)."""

    def __init__(self, weights: FaceIDWeights):
        super().__init__()
        info = weights.info
        self.info = info
        self.image_proj = FaceIDProjection(info.cross_dim, info.num_tokens)
        self.image_proj.load_state_dict({k: v.float() for k, v in weights.image_proj.items()}, assign=True)
        self.to_k_ip = nn.ModuleDict()
        self.to_v_ip = nn.ModuleDict()
        for i in range(1, info.num_processors, 2):
            for name, w in zip(("to_k_ip", "to_v_ip"), weights.kv_weights(i), strict=True):
                lin = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
                lin.weight = nn.Parameter(w.detach(), requires_grad=False)  # shares the file's storage
                getattr(self, name)[str(i)] = lin
        self.requires_grad_(False)

    @torch.no_grad()
    def project(self, embeds: torch.Tensor) -> torch.Tensor:
        p = self.image_proj.proj[0].weight
        return self.image_proj(embeds.to(device=p.device, dtype=p.dtype))

    def kv(self, processor: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.to_k_ip[str(processor)].weight
        v = self.to_v_ip[str(processor)].weight
        return k.to(device=device, dtype=dtype), v.to(device=device, dtype=dtype)


class CastWeights:
    """Every processor's ``to_k_ip`` / ``to_v_ip`` in the dtype and on the device the UNet computes in, converted once
    per run: the published files are fp16, and an fp32 or bf16 UNet would otherwise convert them at every call.

    One target (device, dtype) at a time: a call for another target drops the converted copies, and `clear` (called
    when ComfyUI moves the model) frees them. Weights already of the target's dtype and device are not copied.
    """

    def __init__(self, module: FaceIDAdapterModule):
        self.module = module
        self._target = None
        self._kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def kv(self, processor: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        target = (torch.device(device), dtype)
        if target != self._target:
            self._kv.clear()
            self._target = target
        hit = self._kv.get(processor)
        if hit is None:
            hit = self._kv[processor] = self.module.kv(processor, device, dtype)
        return hit

    def clear(self) -> None:
        self._kv.clear()
        self._target = None

    def __deepcopy__(self, memo):
        return CastWeights(self.module)


def decoupled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                        upcast: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head. q [B, Nq, heads*d], k/v [B, Nk, heads*d] -> [B, Nq, heads*d]."""
    b, nq, inner = q.shape
    d = inner // heads
    dtype = q.dtype
    if upcast and dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    qh, kh, vh = (t.reshape(b, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh)
    return out.transpose(1, 2).reshape(b, nq, inner).to(dtype)


def ip_attention_term(q: torch.Tensor, tokens: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, heads: int,
                      upcast: bool = False) -> torch.Tensor:
    """The decoupled cross-attention of IP-Adapter: attention of q over the identity tokens [B, T, C], with the
    keys and values ``tokens @ w_k^T`` / ``tokens @ w_v^T`` ([H, C] weights). Returns [B, Nq, H]."""
    k = torch.nn.functional.linear(tokens, w_k)
    v = torch.nn.functional.linear(tokens, w_v)
    return decoupled_attention(q, k, v, heads, upcast=upcast)



def percent_window_active(sigma: float, sigma_start: float, sigma_end: float) -> bool:
    """True when sigma lies in [sigma_end, sigma_start] (start_percent maps to the larger sigma)."""
    return sigma_end <= sigma <= sigma_start or math.isclose(sigma, sigma_start) or math.isclose(sigma, sigma_end)
