"""Node widgets built from the knob table (`faceanon.knobs`): a knob's range, default and tooltip are declared once."""

from __future__ import annotations

from ..faceanon.knobs import knob
from .types import io


def knob_input(key: str, name: str | None = None, note: str = "", **widget):
    """The widget input for knob `key`, under the socket name `name` (default: the knob's own name; existing node
    inputs keep their permanent names, e.g. FaceAnonInvert's ``cfg`` is the knob ``inversion_cfg``).

    `note` is appended to the knob's tooltip (what the value means on this node); `widget` passes display options
    such as ``round``.
    """
    spec = knob(key)
    name = name or key
    tooltip = f"{spec.tooltip} {note}" if note else spec.tooltip
    if spec.kind is bool:
        return io.Boolean.Input(name, default=spec.default, tooltip=tooltip, **widget)
    if spec.kind is str:
        return io.Combo.Input(name, options=list(spec.choices), default=spec.default, tooltip=tooltip, **widget)
    kind = io.Int if spec.kind is int else io.Float
    if spec.step is not None:
        widget.setdefault("step", spec.step)
    return kind.Input(name, default=spec.default, min=spec.low, max=spec.high, tooltip=tooltip, **widget)
