"""The branch contract's token assembly: identity tokens per cond index (ComfyUI's ``cond_or_uncond``) and per batch
element, with the null identity (the projection of the ZERO embedding, learned non-zero tokens) wherever no identity
is given. The identities travel as one immutable value (`BranchIdentities`), and the tokens are cached by it."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

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


class BranchIdentities:
    """The identities of one UNet call's guidance branches, as one immutable value.

    Maps a cond index (the values of ComfyUI's ``cond_or_uncond``: the position of the cond in the list given to
    ``calc_cond_batch``; with core CFG 0 = positive, 1 = negative) to raw ArcFace embeddings [n, 512], already scaled
    or negated as the caller wants. A cond index without an entry gets the null identity.

    The embeddings are copied (float32, CPU) when the value is made, so later in-place changes of the caller's
    tensors cannot reach it; two values with equal contents are equal and hash alike (a SHA-256 of the contents), so
    projected tokens are cached by the value itself.
    """

    __slots__ = ("_rows", "_key")

    def __init__(self, identities: Mapping[int, torch.Tensor] | None = None, what: str = "identities"):
        if identities is None:
            identities = {}
        if not isinstance(identities, Mapping):
            raise TypeError(f"{what} must be a dict {{cond index: tensor [n, {ID_DIM}]}} or None, got "
                            f"{type(identities).__name__}")
        rows = []
        for key, value in identities.items():
            if isinstance(key, bool) or not isinstance(key, int):
                raise TypeError(f"{what}: keys are cond indices (int: 0 = positive, 1 = negative with core CFG), got "
                                f"{key!r}")
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{what}[{key}]: expected a tensor [n, {ID_DIM}], got {type(value).__name__}")
            rows.append((key, as_embeddings(value, f"{what}[{key}]").detach().to("cpu", torch.float32).clone()))
        rows.sort(key=lambda row: row[0])
        digest = hashlib.sha256()
        for key, emb in rows:
            digest.update(f"{key}:{tuple(emb.shape)};".encode())
            digest.update(emb.numpy().tobytes())
        self._rows = tuple(rows)
        self._key = digest.digest()

    def __getitem__(self, cond_index: int) -> torch.Tensor:
        """A copy of the embeddings of `cond_index` (KeyError when it has the null identity)."""
        for key, emb in self._rows:
            if key == cond_index:
                return emb.clone()
        raise KeyError(cond_index)

    def __contains__(self, cond_index) -> bool:
        return any(key == cond_index for key, _ in self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __eq__(self, other) -> bool:
        return isinstance(other, BranchIdentities) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __deepcopy__(self, memo):
        return self  # immutable: ModelPatcher.clone may deep-copy model_options

    def __repr__(self) -> str:
        rows = ", ".join(f"{key}: [{emb.shape[0]}, {ID_DIM}]" for key, emb in self._rows)
        return f"BranchIdentities({{{rows}}})"


class IdentityProjector:
    """Projects identities through a FaceIDAdapterModule, with the null identity (the projection of the zero
    embedding) for every cond index that has none, and caches the tokens by `BranchIdentities` value, device and
    dtype: each identity is projected once per run.

    `batch_tokens` implements the branch contract: the batch of one UNet call is ``len(cond_or_uncond)`` chunks of
    equal size; chunk j belongs to cond index ``cond_or_uncond[j]`` and gets ``identities[cond_index]`` ([n, 512],
    n == 1 broadcast to the chunk, else n == chunk size: one identity per element) or the null identity.
    """

    def __init__(self, module: FaceIDAdapterModule, max_cached: int = 16):
        self.module = module
        self.max_cached = max_cached
        self._cache: OrderedDict = OrderedDict()

    def _cached(self, key, make):
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = make()
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit

    def null_tokens(self, device, dtype) -> torch.Tensor:
        """[1, T, C] tokens of the null identity (the projection of the zero embedding)."""
        return self._cached(("null", torch.device(device), dtype),
                            lambda: self.module.project(torch.zeros(1, ID_DIM)).to(device=device, dtype=dtype))

    def branch_tokens(self, identities: BranchIdentities, cond_index: int, device, dtype) -> torch.Tensor:
        """[n, T, C] tokens of one branch's identity, or [1, T, C] null tokens when it has none."""
        if cond_index not in identities:
            return self.null_tokens(device, dtype)
        return self._cached((identities, cond_index, torch.device(device), dtype),
                            lambda: self.module.project(identities[cond_index]).to(device=device, dtype=dtype))

    def batch_tokens(self, cond_or_uncond: Sequence[int], batch: int,
                     identities: BranchIdentities | Mapping | None, device, dtype) -> torch.Tensor:
        """[batch, T, C] tokens for one UNet call (see the class docstring)."""
        if not isinstance(identities, BranchIdentities):
            identities = BranchIdentities(identities)
        chunks = tuple(int(c) for c in cond_or_uncond)
        if not chunks or batch % len(chunks):
            raise ValueError(f"FaceID patch: a batch of {batch} rows cannot be split into {len(chunks)} guidance "
                             f"chunks (cond_or_uncond={list(chunks)})")
        per = batch // len(chunks)

        def assemble():
            parts = []
            for c in chunks:
                t = self.branch_tokens(identities, c, device, dtype)
                if t.shape[0] not in (1, per):
                    raise ValueError(
                        f"FaceID patch: identity for cond index {c} has {t.shape[0]} embeddings, but each guidance "
                        f"chunk of this batch has {per} elements; give 1 embedding (shared) or {per} (one per "
                        f"element)")
                parts.append(t.expand(per, -1, -1) if t.shape[0] == 1 else t)
            return torch.cat(parts, 0) if len(parts) > 1 else parts[0].contiguous()

        return self._cached((identities, chunks, batch, torch.device(device), dtype), assemble)

    def clear(self) -> None:
        """Forget every cached projection (the model moved: the next run projects again, once)."""
        self._cache.clear()

    def __deepcopy__(self, memo):
        # The module is shared (read-only weights); caches are per copy.
        return IdentityProjector(self.module, self.max_cached)
