"""The knob table (faceanon.knobs): one declaration per knob, read by the presets' override parser."""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields

import pytest

import faceanon.presets as presets_module
from faceanon.knobs import KNOBS, knob
from faceanon.presets import PRESETS, Settings, apply_overrides


def test_every_setting_has_a_knob_of_its_type():
    for f in fields(Settings):
        spec = knob(f.name)
        for name, preset in PRESETS.items():
            value = getattr(preset, f.name)
            assert type(value) is spec.kind or (spec.kind is float and type(value) is int), (name, f.name, value)
            assert spec.check(f.name, value) == value, (name, f.name)  # every preset lies within the table
    with pytest.raises(KeyError, match="unknown knob 'nope'"):
        knob("nope")


def test_knob_defaults_lie_within_their_ranges():
    for name, spec in KNOBS.items():
        assert spec.check(name, spec.default) == spec.default
        assert spec.tooltip.strip(), name
        if spec.kind in (int, float):
            assert spec.low < spec.high


@pytest.mark.parametrize("name", [n for n, k in KNOBS.items() if k.kind in (int, float) and n in
                                  {f.name for f in fields(Settings)}])
def test_overrides_accept_exactly_the_table_range(name):
    spec = KNOBS[name]
    preset = "NullFace (SD1.5)"
    for edge in (spec.low, spec.high):
        value = int(edge) if spec.kind is int else edge
        assert getattr(apply_overrides(preset, f"{name} = {value}"), name) == value
    below = spec.low - (1 if spec.kind is int else 0.001)
    above = spec.high + (1 if spec.kind is int else 0.001)
    for value in (below, above):
        with pytest.raises(ValueError, match=f"allowed range is {spec.low:g} to {spec.high:g}"):
            apply_overrides(preset, f"{name} = {int(value) if spec.kind is int else value}")


def test_former_disagreements_take_the_wider_range():
    """The overrides and the node widgets used to disagree; the table keeps the union."""
    expected = {"adapter_weight": (-2.0, 3.0), "lora_strength": (-2.0, 3.0), "margin": (0.5, 4.0),
                "resolution": (64, 4096)}
    assert {n: (KNOBS[n].low, KNOBS[n].high) for n in expected} == expected


def test_override_types_come_from_the_table_not_from_annotations(monkeypatch):
    """The parser must not read `Settings`' annotations (strings under `from __future__ import annotations`)."""
    source = inspect.getsource(presets_module)
    tree = ast.parse(source)
    assert not any(isinstance(n, ast.Attribute) and n.attr == "type" for n in ast.walk(tree)), \
        "the override parser reads dataclass field types"
    # annotations of any form leave the parse unchanged
    for f in fields(Settings):
        monkeypatch.setattr(f, "type", object)
    s = apply_overrides("NullFace (SD1.5)", "steps = 20.0\nzero_negative = on\nmargin = 2\nsolver = dpmpp_2m_sde")
    assert (s.steps, s.zero_negative, s.margin, s.solver) == (20, True, 2.0, "dpmpp_2m_sde")
    assert type(s.steps) is int and type(s.margin) is float
