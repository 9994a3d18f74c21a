"""scripts/anonymize_folder.py against a stand-in for ComfyUI's HTTP API (upload, prompt, history, view)."""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "anonymize_folder.py"

GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
    "2": {"class_type": "SomeAnonymizer", "inputs": {"image": ["1", 0], "seed": 7}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "anon"}},
}


def _load_script():
    spec = importlib.util.spec_from_file_location("anonymize_folder", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeComfy(BaseHTTPRequestHandler):
    """Uploads are stored; a queued prompt "runs" at once: its output is the uploaded bytes reversed."""

    uploads: dict[str, bytes] = {}
    prompts: dict[str, dict] = {}
    fail_on: str = "fail.png"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code, body: bytes, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/upload/image":
            boundary = self.headers["Content-Type"].split("boundary=")[1].encode()
            fields = {}
            for part in data.split(b"--" + boundary)[1:-1]:
                head, _, body = part.strip(b"\r\n").partition(b"\r\n\r\n")
                name = head.split(b'name="')[1].split(b'"')[0].decode()
                fields[name] = (head, body)
            filename = fields["image"][0].split(b'filename="')[1].split(b'"')[0].decode()
            sub = fields["subfolder"][1].decode()
            self.uploads[f"{sub}/{filename}"] = fields["image"][1]
            self._send(200, json.dumps({"name": filename, "subfolder": sub, "type": "input"}).encode())
        elif self.path == "/prompt":
            prompt = json.loads(data)["prompt"]
            pid = f"p{len(self.prompts)}"
            self.prompts[pid] = prompt
            self._send(200, json.dumps({"prompt_id": pid, "number": 0, "node_errors": {}}).encode())
        else:
            self._send(404, b"{}")

    def do_GET(self):
        url = urlparse(self.path)
        if url.path.startswith("/history/"):
            pid = url.path.rsplit("/", 1)[1]
            image = self.prompts[pid]["1"]["inputs"]["image"]
            if image.endswith(self.fail_on):
                entry = {"status": {"status_str": "error", "completed": False, "messages": [
                    ["execution_error", {"exception_message": "no face found"}]]}, "outputs": {}}
            else:
                entry = {"status": {"status_str": "success", "completed": True},
                         "outputs": {"3": {"images": [{"filename": image, "subfolder": "", "type": "output"}]}}}
            self._send(200, json.dumps({pid: entry}).encode())
        elif url.path == "/view":
            name = parse_qs(url.query)["filename"][0]
            self._send(200, self.uploads[name][::-1], "image/png")
        else:
            self._send(404, b"{}")


@pytest.fixture()
def server():
    FakeComfy.uploads, FakeComfy.prompts = {}, {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeComfy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_every_image_goes_through_the_workflow_and_lands_under_its_stem(server, tmp_path):
    mod = _load_script()
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "alice.jpg").write_bytes(b"JPEG-alice")
    (inp / "bob.png").write_bytes(b"PNG-bob")
    (inp / "notes.txt").write_text("not an image")
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH))
    code = mod.main(["--server", server, "--workflow", str(wf), "--input", str(inp), "--output", str(out)])
    assert code == 0
    assert (out / "alice.png").read_bytes() == b"JPEG-alice"[::-1]
    assert (out / "bob.png").read_bytes() == b"PNG-bob"[::-1]
    assert sorted(p.name for p in out.iterdir()) == ["alice.png", "bob.png"]
    sent = list(FakeComfy.prompts.values())
    assert [p["1"]["inputs"]["image"] for p in sent] == ["faceanon_eval/alice.jpg", "faceanon_eval/bob.png"]
    assert all(p["2"] == GRAPH["2"] for p in sent)  # the rest of the graph is sent unchanged
    assert GRAPH["1"]["inputs"]["image"] == "placeholder.png"  # the loaded workflow is not mutated


def test_failures_are_reported_and_other_images_still_run(server, tmp_path, caplog):
    mod = _load_script()
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "fail.png").write_bytes(b"x")
    (inp / "ok.png").write_bytes(b"y")
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(GRAPH))
    code = mod.main(["--server", server, "--workflow", str(wf), "--input", str(inp), "--output", str(out)])
    assert code == 1
    assert (out / "ok.png").exists() and not (out / "fail.png").exists()
    assert "fail.png: the workflow failed: no face found" in caplog.text


def test_bad_workflows_and_unreachable_server_are_explained(tmp_path, capsys):
    mod = _load_script()
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.png").write_bytes(b"x")
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    assert mod.main(["--workflow", str(ui), "--input", str(inp), "--output", str(tmp_path / "o")]) == 2
    assert "not an API-format workflow" in capsys.readouterr().err
    two = dict(GRAPH, **{"4": {"class_type": "LoadImage", "inputs": {"image": "b.png"}}})
    wf = tmp_path / "two.json"
    wf.write_text(json.dumps(two))
    assert mod.main(["--workflow", str(wf), "--input", str(inp), "--output", str(tmp_path / "o")]) == 2
    assert "2 LoadImage node(s)" in capsys.readouterr().err
    wf.write_text(json.dumps(GRAPH))
    code = mod.main(["--server", "http://127.0.0.1:9", "--workflow", str(wf), "--input", str(inp),
                     "--output", str(tmp_path / "o")])
    assert code == 2
