"""js/faceanon.js's report summaries, run in Node.js on the UI payloads the nodes send.

The extension builds what it shows under a node from the structured report fields of the UI payload
("faceanon_report" JSON, nodes/faces.py `ui_payload`); these tests feed it payloads of the shape each node sends
(the report text is deliberately absent or misleading, so a summary that parsed the text would fail).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


def summarize(tmp_path, node_type: str, output: dict):
    source = (REPO_ROOT / "js" / "faceanon.js").read_text()
    # the ComfyUI frontend's app module does not exist outside the browser: a stub takes its place
    source = source.replace('import { app } from "../../scripts/app.js";', "const app = { registerExtension() {} };")
    module = tmp_path / "faceanon.mjs"
    module.write_text(source)
    script = (f"import {{ summarize }} from {json.dumps(module.as_uri())};\n"
              f"console.log(JSON.stringify(summarize({json.dumps(node_type)}, {json.dumps(output)})));")
    run = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def payload(fields: dict, text: str = "all good") -> dict:
    return {"text": [text], "faceanon_report": [json.dumps(fields)]}


def test_anonymize_summary_comes_from_the_fields(tmp_path):
    ok = payload({"faces": [{"face": 0, "anonymized": True}, {"face": 1, "anonymized": True}],
                  "not_anonymized_images": [], "notes": []}, text="WARNING: NOT anonymized FAIL")
    assert summarize(tmp_path, "FaceAnonymize", ok) == {"level": "ok", "lines": ["2 face(s) found, 2 anonymized"]}
    flagged = payload({"faces": [], "not_anonymized_images": [0, 2], "notes": []})
    assert summarize(tmp_path, "FaceAnonymize", flagged) == {
        "level": "warn", "lines": ["0 face(s) found, 0 anonymized", "image 0: no face found, NOT anonymized",
                                   "image 2: no face found, NOT anonymized"]}


def test_detect_summary_comes_from_the_fields(tmp_path):
    fields = {"n_faces": 3, "batch_size": 2, "images_without_faces": []}
    assert summarize(tmp_path, "FaceAnonDetectFaces", payload(fields, "WARNING")) == {
        "level": "ok", "lines": ["3 face(s) in 2 image(s)"]}
    fields = {"n_faces": 3, "batch_size": 3, "images_without_faces": [1]}
    assert summarize(tmp_path, "FaceAnonDetectFaces", payload(fields)) == {
        "level": "warn", "lines": ["3 face(s) in 3 image(s)", "image 1: no face found, NOT anonymized"]}


def test_verify_summary_comes_from_the_fields(tmp_path):
    fields = {"passed": False, "summary": "identity check: 1/2 face(s) pass; 1 FAIL", "images_without_faces": [3],
              "faces": [{"status": "pass", "text": "image 0, face 0: pass"},
                        {"status": "fail", "text": "image 0, face 1: FAIL, similarity 0.9"}]}
    assert summarize(tmp_path, "FaceAnonVerify", payload(fields)) == {
        "level": "warn", "lines": ["identity check: 1/2 face(s) pass; 1 FAIL",
                                   "WARNING: no face found in original image(s) 3: nothing was checked there",
                                   "image 0, face 1: FAIL, similarity 0.9"]}
    fields = {"passed": True, "summary": "identity check: 1/1 face(s) pass", "images_without_faces": [],
              "faces": [{"status": "pass", "text": "image 0, face 0: pass"}]}
    assert summarize(tmp_path, "FaceAnonVerify", payload(fields, "FAIL")) == {
        "level": "ok", "lines": ["identity check: 1/1 face(s) pass"]}


def test_text_alone_is_not_read(tmp_path):
    assert summarize(tmp_path, "FaceAnonVerify", {"text": ["identity check: 0/1 face(s) pass; 1 FAIL"]}) is None
    assert summarize(tmp_path, "FaceAnonymize", {"faceanon_report": ["{not json"]}) == {
        "level": "warn", "lines": ["FaceAnon: unreadable report"]}


def test_video_summaries_come_from_the_fields(tmp_path):
    tracks = {"frames": 20, "cuts": [14], "observed": 20,
              "tracks": [{"track": 0, "lost": []}, {"track": 1, "lost": [8, 9, 10]}]}
    assert summarize(tmp_path, "FaceAnonTrackFaces", payload(tracks)) == {
        "level": "warn", "lines": ["2 track(s) in 20 frame(s), 1 cut(s)",
                                   "track 1: face LOST in 3 frame(s), check them"]}
    people = {"tracks": [{"track": 0, "anonymized": [0, 1], "blurred": [], "exempt": [], "lost": []},
                         {"track": 1, "anonymized": [], "blurred": [], "exempt": [0, 1], "lost": []}], "notes": []}
    assert summarize(tmp_path, "FaceAnonAnonymizePeople", payload(people, "WARNING BLURRED")) == {
        "level": "ok", "lines": ["2 person(s): 1 anonymized, 1 kept"]}
    people["tracks"][0]["blurred"] = [1]
    assert summarize(tmp_path, "FaceAnonAnonymizePeople", payload(people))["lines"][1:] == [
        "track 0: anonymization failed, BLURRED in 1 frame(s)"]
