"""Figures the docs state, measured here through the nodes: each test reads the figure from the doc's own sentence
and asserts it, so the docs say what the tests measure (change one and the other must follow).

* docs/faces.md, Paste Faces: an unchanged crop pasted back, inside the pasted region, with `limit_to_face` off
  (the feathered square of one face's paste mask reaches into a neighbouring face) and on. Measured through
  Detect Faces -> Crop Faces -> Paste Faces at the nodes' defaults (512 px crops, feather 16, colour match mean) on
  two photos of synthetic faces: tests/test_faces_host.py's two-face photo and the workflows' three-face group
  stand-in (tests/workflow_assets.py); the worst pixel in /255 of the 8-bit scale.
* docs/faces.md, paste-back detail: the tolerance within which the original's lost detail is added back is the
  code's default (`paste_faces(detail_tolerance=...)`).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tests.test_faces_host import detect, load, setup  # noqa: F401 - the module fixture with the two-face photo

DOCS = Path(__file__).resolve().parents[1] / "docs"
NUMBER = r"(\d+(?:\.\d+)?)"


def figure(doc: str, pattern: str) -> float:
    found = re.findall(pattern, (DOCS / doc).read_text())
    assert len(found) == 1, f"{doc} should state this figure once: /{pattern}/ matched {found}"
    return float(found[0])


def worst_pixel_255(host, photo: str, limit_to_face: bool) -> float:
    graph = load(photo) | detect() | {
        "5": {"class_type": "FaceAnonCropFaces",
              "inputs": {"image": ["1", 0], "faces": ["3", 0], "size": 512, "margin": 1.0, "padding": "reflection"}},
        "7": {"class_type": "FaceAnonPasteFaces",
              "inputs": {"image": ["1", 0], "crops": ["5", 0], "face_crops": ["5", 1], "feather": 16.0,
                         "color_match": "mean", "limit_to_face": limit_to_face}},
    }
    out = host.run(graph, all_nodes=True)
    image = out["1"][0]
    pasted, alpha, _ = out["7"]
    changed = alpha > 0
    assert int(changed.sum()) > 1000
    return float((pasted - image).abs().amax(-1)[changed].max()) * 255


def test_unchanged_crop_pastes_back_within_the_documented_figures(setup):  # noqa: F811
    from tests.workflow_assets import write_photos

    write_photos(setup.input_dir)
    two = figure("faces.md", rf"the worst pixel is {NUMBER}/255 on two faces")
    three = figure("faces.md", rf"and {NUMBER}/255 on three faces")
    on = figure("faces.md", rf"with it on, exactly {NUMBER}/255")
    measured = {photo: worst_pixel_255(setup, photo, False) for photo in ("faces_two.png", "group_photo.png")}
    assert abs(measured["faces_two.png"] - two) < 0.05, (measured, two)
    assert abs(measured["group_photo.png"] - three) < 0.05, (measured, three)
    for photo in measured:
        assert worst_pixel_255(setup, photo, True) < on + 0.01  # float32 rounding only


def test_detail_tolerance_is_the_code_default():
    pytest.importorskip("kornia")
    from faceanon.faces import paste_faces

    documented = figure("faces.md", rf"still equals the original crop \(within {NUMBER}/255\)")
    default = inspect.signature(paste_faces).parameters["detail_tolerance"].default
    assert abs(default * 255 - documented) < 1e-9
