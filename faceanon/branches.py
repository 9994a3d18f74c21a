"""Which guidance branches one step of the identity guider evaluates, as a pure function.

A step always needs the conditional branch (positive text + the person's identity) and the unconditional one
(attribute prompt, else negative text, + the null identity). When the mask gate is active it also needs the
*identity-free* prediction used outside the mask: the inversion's own prediction, i.e. CFG at the inversion's scale
between the inversion's positive and negative texts, both with the null identity (algorithms.md A.5). Extra model
evaluations are spent only where that prediction needs a text the step has not computed yet:

* both identity-free texts equal the unconditional one (NullFace, "" everywhere): the unconditional branch itself;
* both identity-free texts equal, but not the unconditional one (an attribute prompt): CFG between two equal
  predictions is either of them, one extra branch;
* different identity-free texts: one extra branch for each of them that is not the unconditional text (Reverse
  Personalization without an attribute prompt: one, the positive text; with one: two), combined by CFG.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Branch", "Outside", "BranchPlan", "branch_plan"]


class Branch(enum.Enum):
    """One prediction of a step: its text and its identity."""

    IDENTITY = "positive text + identity"
    UNCOND = "unconditional text + null identity"
    NULL_POSITIVE = "the identity-free positive text (the inversion's) + null identity"
    NULL_NEGATIVE = "the identity-free negative text (the inversion's) + null identity"


class Outside(enum.Enum):
    """How the identity-free prediction (used outside the mask) is obtained from the branches."""

    NOT_GATED = "no mask this step: the guided prediction everywhere"
    UNCOND = "the unconditional branch itself"
    NULL_POSITIVE = "the identity-free positive text's branch (both identity-free texts are equal)"
    CFG = "CFG at the inversion's scale between the NULL_POSITIVE and NULL_NEGATIVE predictions (see `source`)"


@dataclass(frozen=True)
class BranchPlan:
    """The branches to evaluate, in ``calc_cond_batch`` order (the cond index of each is its position), and how the
    prediction outside the mask is formed from them."""

    branches: tuple[Branch, ...]
    outside: Outside

    def source(self, branch: Branch) -> int:
        """Position of the prediction that serves `branch`: its own, else the unconditional one (same text)."""
        return self.branches.index(branch) if branch in self.branches else self.branches.index(Branch.UNCOND)


def branch_plan(gated: bool, positive_is_uncond: bool, negative_is_uncond: bool, same_text: bool) -> BranchPlan:
    """The branches one guided step needs.

    Args:
        gated (`bool`): the mask gates this step (a mask is set and the step is past the mask delay).
        positive_is_uncond (`bool`): the identity-free positive text equals the unconditional branch's text.
        negative_is_uncond (`bool`): the identity-free negative text equals the unconditional branch's text.
        same_text (`bool`): the two identity-free texts are equal (both papers' positive text is the empty prompt;
            NullFace's negative too).

    Returns:
        `BranchPlan`: ``branches[0]`` is always the identity branch (cond index 0, the only one given an identity) and
        ``branches[1]`` the unconditional one; 2 to 4 branches in all.
    """
    base = (Branch.IDENTITY, Branch.UNCOND)
    if not gated:
        return BranchPlan(base, Outside.NOT_GATED)
    if same_text and (positive_is_uncond or negative_is_uncond):
        return BranchPlan(base, Outside.UNCOND)
    if same_text:
        return BranchPlan(base + (Branch.NULL_POSITIVE,), Outside.NULL_POSITIVE)
    extra = (() if positive_is_uncond else (Branch.NULL_POSITIVE,)) + \
        (() if negative_is_uncond else (Branch.NULL_NEGATIVE,))
    return BranchPlan(base + extra, Outside.CFG)
