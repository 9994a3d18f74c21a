"""The branch contract's token assembly: identity tokens per cond index (ComfyUI's ``cond_or_uncond``) and per batch
element, with the null identity (the projection of the ZERO embedding, learned non-zero tokens) wherever no identity
is given, cached per run."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .files import ID_DIM
from .modules import FaceIDAdapterModule


def as_embeddings(value, what: str = "identity") -> torch.Tensor:
    """A float tensor [n, 512] from a tensor [512] / [n, 512] (or anything torch.as_tensor takes)."""
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[-1] != ID_DIM or t.shape[0] == 0:
        raise ValueError(f"{what}: expected ArcFace embeddings of shape [n, {ID_DIM}], got {list(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t


def _version(t: torch.Tensor) -> int:
    """In-place modification counter; inference tensors (ComfyUI runs nodes under torch.inference_mode) have none,
    and cannot be modified in place either, so 0 is exact for them."""
    return 0 if t.is_inference() else t._version


@dataclass
class IdentityProjector:
    """Projects identities through a FaceIDAdapterModule, with the null identity (the projection of the zero
    embedding) for every cond index that has none, and caches the results.

    `batch_tokens` implements the branch contract: the batch of one UNet call is ``len(cond_or_uncond)`` chunks of
    equal size; chunk j belongs to cond index ``cond_or_uncond[j]`` and gets ``identities[cond_index]`` ([n, 512],
    n == 1 broadcast to the chunk, else n == chunk size: one identity per element) or the null identity.
    """

    module: FaceIDAdapterModule
    max_cached: int = 16
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _last: tuple | None = field(default=None, repr=False)

    def null_tokens(self, device, dtype) -> torch.Tensor:
        return self.tokens(None, device, dtype)

    def tokens(self, embeds: torch.Tensor | None, device, dtype) -> torch.Tensor:
        """[n, T, C] tokens of one identity tensor (None: the null identity, n = 1)."""
        p = self.module.image_proj.proj[0].weight
        if embeds is None:
            key = ("null", p.device, device, dtype)
            ref, version = None, None
        else:
            key = (id(embeds), p.device, device, dtype)
            ref, version = weakref.ref(embeds), _version(embeds)
        hit = self._cache.get(key)
        if hit is not None and (ref is None or (hit[0]() is embeds and hit[1] == version)):
            self._cache.move_to_end(key)
            return hit[2]
        src = torch.zeros(1, ID_DIM) if embeds is None else embeds
        out = self.module.project(src).to(device=device, dtype=dtype)
        self._cache[key] = (ref if ref is not None else (lambda: None), version, out)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return out

    def batch_tokens(self, cond_or_uncond: Sequence[int], batch: int, identities: Mapping | None,
                     device, dtype) -> torch.Tensor:
        """[batch, T, C] tokens for one UNet call (see the class docstring)."""
        identities = identities or {}
        chunks = list(cond_or_uncond)
        refs = tuple(e for e in identities.values() if isinstance(e, torch.Tensor))
        # inference tensors (ComfyUI runs nodes under torch.inference_mode) have no version counter; they cannot be
        # modified in place either, so their identity alone is a valid cache key
        ids_key = tuple(sorted((int(c), id(e), _version(e))
                               for c, e in identities.items() if isinstance(e, torch.Tensor)))
        key = (tuple(int(c) for c in chunks), batch, ids_key, len(identities), device, dtype)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        if not chunks or batch % len(chunks):
            raise ValueError(f"FaceID patch: a batch of {batch} rows cannot be split into {len(chunks)} guidance "
                             f"chunks (cond_or_uncond={chunks})")
        per = batch // len(chunks)
        parts = []
        for c in chunks:
            e = identities.get(c)
            if e is None:
                t = self.null_tokens(device, dtype)
            else:
                if not isinstance(e, torch.Tensor) or e.ndim != 2 or e.shape[1] != ID_DIM:
                    raise ValueError(f"FaceID patch: identity for cond index {c} must be a tensor [n, {ID_DIM}], got "
                                     f"{getattr(e, 'shape', type(e).__name__)}")
                if e.shape[0] not in (1, per):
                    raise ValueError(
                        f"FaceID patch: identity for cond index {c} has {e.shape[0]} embeddings, but each guidance "
                        f"chunk of this batch has {per} elements; give 1 embedding (shared) or {per} (one per "
                        f"element)")
                t = self.tokens(e, device, dtype)
            parts.append(t.expand(per, -1, -1) if t.shape[0] == 1 else t)
        out = torch.cat(parts, 0) if len(parts) > 1 else parts[0].contiguous()
        # hold the identity tensors (refs) so that their ids cannot be reused while this entry is cached
        self._last = (key, out, refs)
        return out

    def __deepcopy__(self, memo):
        # The module is shared (read-only weights); caches are per copy.
        return IdentityProjector(self.module, self.max_cached)
