"""The node widgets that show a knob take its range, default and tooltip from the knob table."""

from __future__ import annotations

from faceanon.knobs import KNOBS

# (node id, input name) -> knob
WIDGETS = {
    ("FaceAnonInvert", "solver"): "solver", ("FaceAnonInvert", "steps"): "steps", ("FaceAnonInvert", "skip"): "skip",
    ("FaceAnonInvert", "eta"): "eta", ("FaceAnonInvert", "cfg"): "inversion_cfg",
    ("FaceAnonIdentityGuider", "identity_scale"): "identity_scale", ("FaceAnonIdentityGuider", "cfg"): "cfg",
    ("FaceAnonIdentityGuider", "mask_delay"): "mask_delay", ("FaceAnonIdentityGuider", "mask_feather"): "mask_feather",
    ("FaceAnonApplyIDAdapter", "weight"): "adapter_weight",
    ("FaceAnonApplyIDAdapter", "lora_strength"): "lora_strength",
    ("FaceAnonCropFaces", "size"): "resolution", ("FaceAnonCropFaces", "margin"): "margin",
    ("FaceAnonDetectFaces", "threshold"): "detection_threshold", ("FaceAnonDetectFaces", "min_face_size"):
        "min_face_size",
    ("FaceAnonVerify", "detection_threshold"): "detection_threshold", ("FaceAnonVerify", "min_face_size"):
        "min_face_size",
    ("FaceAnonymize", "threshold"): "detection_threshold", ("FaceAnonymize", "min_face_size"): "min_face_size",
}


def test_widgets_read_the_knob_table(host):
    for (node_id, name), key in WIDGETS.items():
        spec = KNOBS[key]
        required = host.nodes.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
        kind, options = {**required.get("required", {}), **required.get("optional", {})}[name]
        assert options["default"] == spec.default, (node_id, name)
        assert options["tooltip"].startswith(spec.tooltip), (node_id, name)
        if spec.kind is str:
            assert list(kind) == list(spec.choices) or list(options.get("options", kind)) == list(spec.choices)
        else:
            assert kind == {int: "INT", float: "FLOAT", bool: "BOOLEAN"}[spec.kind], (node_id, name)
        if spec.kind in (int, float):
            assert (options["min"], options["max"]) == (spec.low, spec.high), (node_id, name)
