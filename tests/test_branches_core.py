"""Which guidance branches a step of the identity guider evaluates (faceanon.branches), without ComfyUI."""

from __future__ import annotations

import itertools

import pytest

from faceanon.branches import Branch, Outside, branch_plan

B = Branch
FLAGS = list(itertools.product([False, True], repeat=3))  # positive_is_uncond, negative_is_uncond, same_text
# the combinations text equality allows (equal to the same text => equal to each other)
POSSIBLE = [(p, n, same) for p, n, same in FLAGS if not (p and n and not same) and not (same and p != n)]


@pytest.mark.parametrize("flags", FLAGS)
def test_ungated_steps_need_only_the_two_guidance_branches(flags):
    plan = branch_plan(False, *flags)
    assert plan.branches == (B.IDENTITY, B.UNCOND) and plan.outside is Outside.NOT_GATED


@pytest.mark.parametrize("flags,branches,outside", [
    # NullFace: "" everywhere, the null branch is the outside prediction
    ((True, True, True), (B.IDENTITY, B.UNCOND), Outside.UNCOND),
    # equal identity-free texts under an attribute prompt: one extra branch
    ((False, False, True), (B.IDENTITY, B.UNCOND, B.NULL_POSITIVE), Outside.NULL_POSITIVE),
    # Reverse Personalization with an attribute prompt: both identity-free texts are extra
    ((False, False, False), (B.IDENTITY, B.UNCOND, B.NULL_POSITIVE, B.NULL_NEGATIVE), Outside.CFG),
    # Reverse Personalization without one: the unconditional branch holds the inversion's negative text
    ((False, True, False), (B.IDENTITY, B.UNCOND, B.NULL_POSITIVE), Outside.CFG),
    # a guider whose unconditional text is the inversion's positive one
    ((True, False, False), (B.IDENTITY, B.UNCOND, B.NULL_NEGATIVE), Outside.CFG),
])
def test_gated_steps_add_only_the_branches_the_identity_free_prediction_lacks(flags, branches, outside):
    plan = branch_plan(True, *flags)
    assert plan.branches == branches and plan.outside is outside


@pytest.mark.parametrize("gated,flags", list(itertools.product([False, True], POSSIBLE)))
def test_every_plan_puts_the_identity_first_and_never_repeats_a_branch(gated, flags):
    """The identity is given to cond index 0 only; every other index gets the null identity."""
    positive_is_uncond, negative_is_uncond, same = flags
    plan = branch_plan(gated, *flags)
    assert plan.branches[:2] == (B.IDENTITY, B.UNCOND)
    assert len(set(plan.branches)) == len(plan.branches) and 2 <= len(plan.branches) <= 4
    if plan.outside is Outside.CFG:
        # each identity-free text is served by its own branch, or by the unconditional one when it is that text
        assert (plan.source(B.NULL_POSITIVE) == 1) == positive_is_uncond
        assert (plan.source(B.NULL_NEGATIVE) == 1) == negative_is_uncond
        assert plan.source(B.NULL_POSITIVE) != plan.source(B.NULL_NEGATIVE)
