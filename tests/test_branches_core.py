"""Which guidance branches a step of the identity guider evaluates (faceanon.branches), without ComfyUI."""

from __future__ import annotations

import itertools

import pytest

from faceanon.branches import Branch, Outside, branch_plan

B = Branch


@pytest.mark.parametrize("has_attribute,same_text", list(itertools.product([False, True], repeat=2)))
def test_ungated_steps_need_only_the_two_guidance_branches(has_attribute, same_text):
    plan = branch_plan(False, has_attribute, same_text)
    assert plan.branches == (B.IDENTITY, B.UNCOND) and plan.outside is Outside.NOT_GATED


@pytest.mark.parametrize("has_attribute,same_text,branches,outside", [
    (False, True, (B.IDENTITY, B.UNCOND), Outside.UNCOND),  # NullFace: the null branch is the outside prediction
    (True, True, (B.IDENTITY, B.UNCOND, B.NULL_POSITIVE), Outside.NULL_POSITIVE),
    (True, False, (B.IDENTITY, B.UNCOND, B.NULL_POSITIVE, B.NULL_NEGATIVE), Outside.CFG),
    (False, False, (B.IDENTITY, B.UNCOND, B.NULL_POSITIVE), Outside.CFG),
])
def test_gated_steps_add_only_the_branches_the_identity_free_prediction_lacks(has_attribute, same_text, branches,
                                                                            outside):
    plan = branch_plan(True, has_attribute, same_text)
    assert plan.branches == branches and plan.outside is outside


def test_every_plan_puts_the_identity_first_and_never_repeats_a_branch():
    """The identity is given to cond index 0 only; every other index gets the null identity."""
    for gated, attribute, same in itertools.product([False, True], repeat=3):
        plan = branch_plan(gated, attribute, same)
        assert plan.branches[:2] == (B.IDENTITY, B.UNCOND)
        assert len(set(plan.branches)) == len(plan.branches) and 2 <= len(plan.branches) <= 4
        # the CFG outside prediction needs a negative-text null branch: its own, or the unconditional one
        if plan.outside is Outside.CFG:
            assert B.NULL_POSITIVE in plan.branches and (B.NULL_NEGATIVE in plan.branches or not attribute)
