"""Which guidance branches one step of the identity guider evaluates, as a pure function.

A step always needs the conditional branch (positive text + the person's identity) and the unconditional one
(attribute prompt, else negative text, + the null identity). When the mask gate is active it also needs the
*identity-free* prediction used outside the mask: the same guidance with the null identity in the conditional branch
and the inversion's texts (algorithms.md A.5). Extra model evaluations are spent only where that prediction differs
from the ones already computed:

* no attribute prompt and equal texts: the identity-free prediction is the unconditional branch itself;
* an attribute prompt and equal texts: CFG between two equal predictions is either of them, one extra branch
  (positive text + null identity);
* an attribute prompt and different texts: two extra branches (positive and negative text, null identity), combined
  by the same CFG;
* no attribute prompt and different texts: one extra branch (positive text + null identity), combined by CFG with
  the unconditional branch (which is then the negative text + null identity).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Branch", "Outside", "BranchPlan", "branch_plan"]


class Branch(enum.Enum):
    """One prediction of a step: its text and its identity."""

    IDENTITY = "positive text + identity"
    UNCOND = "unconditional text + null identity"
    NULL_POSITIVE = "positive text + null identity"
    NULL_NEGATIVE = "negative text + null identity"


class Outside(enum.Enum):
    """How the identity-free prediction (used outside the mask) is obtained from the branches."""

    NOT_GATED = "no mask this step: the guided prediction everywhere"
    UNCOND = "the unconditional branch itself"
    NULL_POSITIVE = "the positive text + null identity branch"
    CFG = "CFG between NULL_POSITIVE and NULL_NEGATIVE (or UNCOND when that holds the negative text)"


@dataclass(frozen=True)
class BranchPlan:
    """The branches to evaluate, in ``calc_cond_batch`` order (the cond index of each is its position), and how the
    prediction outside the mask is formed from them."""

    branches: tuple[Branch, ...]
    outside: Outside


def branch_plan(gated: bool, has_attribute: bool, same_text: bool) -> BranchPlan:
    """The branches one guided step needs.

    Args:
        gated (`bool`): the mask gates this step (a mask is set and the step is past the mask delay).
        has_attribute (`bool`): an attribute prompt replaces the unconditional text.
        same_text (`bool`): the positive and negative texts are equal (both papers use the empty prompt).

    Returns:
        `BranchPlan`: ``branches[0]`` is always the identity branch (cond index 0, the only one given an identity) and
        ``branches[1]`` the unconditional one; 2 to 4 branches in all.
    """
    base = (Branch.IDENTITY, Branch.UNCOND)
    if not gated:
        return BranchPlan(base, Outside.NOT_GATED)
    if not has_attribute and same_text:
        return BranchPlan(base, Outside.UNCOND)
    if same_text:
        return BranchPlan(base + (Branch.NULL_POSITIVE,), Outside.NULL_POSITIVE)
    if has_attribute:
        return BranchPlan(base + (Branch.NULL_POSITIVE, Branch.NULL_NEGATIVE), Outside.CFG)
    return BranchPlan(base + (Branch.NULL_POSITIVE,), Outside.CFG)
