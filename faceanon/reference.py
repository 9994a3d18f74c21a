"""Who to anonymize: matching tracks (or single faces) against reference photos' identities, and the policy.

Policies (`POLICIES`):

- "everyone": every track is anonymized (the default; references are not needed).
- "everyone except the reference people": a track confidently matched to a reference person is left untouched (the
  people who agreed to be filmed keep their face, bit for bit); every other track is anonymized.
- "only the reference people": tracks matched to a reference person are anonymized, tracks that are clearly
  nobody of the references are left untouched, and tracks in between are anonymized.

Both exemptions fail closed: only a *confident* decision leaves a face untouched.

Matching is a vote over the track's detected faces (interpolated faces have no embedding). A face votes for the
reference it is most similar to when that ArcFace cosine similarity reaches `threshold`:

- "match" (reference r): at least `min_votes` (a fraction) of the track's faces vote for r.
- "no match": no face of the track reaches `threshold` with any reference.
- "uncertain": anything in between (some faces look like a reference, too few to be sure), or a track without
  any embedding.

What the threshold means: ArcFace cosine similarity between two normalised embeddings. With insightface's
buffalo_l recognizer (w600k_r50), photos of the same person typically score 0.5-0.8 and different people below
0.2-0.3; the default 0.4 sits between (insightface's own verification thresholds are 0.3-0.4). Raise it to exempt
people only when the match is very clear; with "only the reference people", lowering it treats more look-alikes as
"uncertain", which anonymizes them. A still photo is a track of one face: one vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["POLICIES", "EVERYONE", "EXCEPT", "ONLY", "Match", "match_track", "to_anonymize"]

EVERYONE = "everyone"
EXCEPT = "everyone except the reference people"
ONLY = "only the reference people"
POLICIES = (EVERYONE, EXCEPT, ONLY)

MATCH, NO_MATCH, UNCERTAIN = "match", "no match", "uncertain"


@dataclass(frozen=True)
class Match:
    """The decision for one track.

    Attributes:
        decision: "match", "no match" or "uncertain".
        reference: index of the matched reference person (-1 unless "match").
        votes: faces that voted for that reference (for the best-voted reference otherwise).
        faces: faces with an embedding (the voters).
        best_similarity: highest similarity of any face with any reference (-1 without voters).
    """

    decision: str
    reference: int = -1
    votes: int = 0
    faces: int = 0
    best_similarity: float = -1.0

    def describe(self) -> str:
        if self.faces == 0:
            return "uncertain (no face with an ArcFace embedding)"
        who = f"reference {self.reference}" if self.decision == MATCH else "a reference"
        return (f"{self.decision}: {self.votes}/{self.faces} face(s) vote for {who}, best similarity "
                f"{self.best_similarity:.2f}")


def match_track(embeddings: np.ndarray, references: np.ndarray, threshold: float = 0.4,
                min_votes: float = 0.5) -> Match:
    """Vote a track's faces against the reference identities.

    Args:
        embeddings: [M, D] normalised ArcFace embeddings of the track's detected faces (M may be 0).
        references: [R, D] normalised reference identities (R >= 1).
        threshold: similarity a face needs to vote for a reference.
        min_votes: fraction of the track's faces that must vote for the same reference for a "match" (0..1].

    Returns:
        A `Match`.
    """
    embeddings = np.asarray(embeddings, np.float32).reshape(-1, references.shape[-1] if len(references) else 512)
    if not 0.0 < min_votes <= 1.0:
        raise ValueError(f"min_votes must be a fraction in (0, 1], got {min_votes}")
    if len(embeddings) == 0 or len(references) == 0:
        return Match(UNCERTAIN, faces=len(embeddings))
    sims = embeddings @ np.asarray(references, np.float32).T  # [M, R]
    best = sims.argmax(1)
    voting = sims.max(1) >= threshold
    counts = np.bincount(best[voting], minlength=len(references))
    top = int(counts.argmax())
    m = len(embeddings)
    best_similarity = float(sims.max())
    if counts[top] >= min_votes * m:
        return Match(MATCH, reference=top, votes=int(counts[top]), faces=m, best_similarity=best_similarity)
    if counts.sum() == 0:
        return Match(NO_MATCH, faces=m, best_similarity=best_similarity)
    return Match(UNCERTAIN, votes=int(counts[top]), faces=m, best_similarity=best_similarity)


def to_anonymize(policy: str, match: Match | None) -> bool:
    """Whether a track is anonymized under `policy` (fail closed: only a confident decision spares a face)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of: {', '.join(POLICIES)}")
    if policy == EVERYONE:
        return True
    if match is None:
        raise ValueError(f"the policy {policy!r} needs reference identities (connect Reference Faces)")
    if policy == EXCEPT:
        return match.decision != MATCH
    return match.decision != NO_MATCH


def reference_matrix(embeddings: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """[R, D] float32 rows, each re-normalised (identities may come averaged)."""
    refs = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1)
    return refs / np.maximum(np.linalg.norm(refs, axis=1, keepdims=True), 1e-12)
