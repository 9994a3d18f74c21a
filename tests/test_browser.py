"""The shipped workflows and the frontend extension in the real ComfyUI UI, in a real (headless) browser.

Starts the real ComfyUI server (main.py, `--cpu` on 127.0.0.1, a free port, a throw-away `--base-directory` whose
custom_nodes/ links to this repository: tests/comfy_server.py), opens it in headless Chromium (Debian's `chromium`,
driven by Playwright's Python package; no browser download), and as a user would:

* the pack's workflows are listed as templates (`/workflow_templates`) and every one is fetched from the server's
  template URL and loaded with `app.loadGraphData`: no missing-node dialog or any other dialog, no error toast, no
  uncaught page error; every node type known to the frontend; each node's widget values as loaded by the frontend
  equal the file's, and the frontend's own API conversion (`app.graphToPrompt`) equals ours
  (faceanon/workflow.ui_to_api); the pack's nodes have the extension's colour. A screenshot of each is saved
  under tests/out/screenshots/ (gitignored);
* a control: a workflow with an unknown node type does raise the missing-node dialog (so the check above works);
* the group-photo workflow is run from the page (Queue) on stand-in models installed under the default file names
  (tests/workflow_assets.py: random SD1.5-layout checkpoint, FaceID file for it, synthesized insightface pack;
  preset overrides cut steps and crop size): the extension shows "3 face(s) found, 3 anonymized" on Anonymize
  Faces, the saved PNG has no metadata although the page sent the workflow as extra_pnginfo, and the output /
  temp folders hold only the saved image and the previews. Then a photo without a face, passed through: the
  node shows it NOT anonymized in red and a warning toast appears.

Skips with the reason when no ComfyUI, no Chromium or no Playwright is found. The server is stopped by PID.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest

from scripts.build_workflows import FILE_INPUTS, WORKFLOWS, WORKFLOWS_DIR
from dev.host import find_host
from faceanon.workflow import check_workflow, layout, ui_to_api

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO_ROOT / "tests" / "out" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PACK_COLOR = "#2b5763"  # js/faceanon.js
STEMS = list(WORKFLOWS)
FAST_OVERRIDES = "resolution = 64\nsteps = 3\nmask_delay = 1"
VIEWPORT = {"width": 1920, "height": 1080}
# no first-run template browser (it would cover the canvas), readable text at any zoom in the screenshots, no
# minimap; the missing-nodes warning stays on (default)
UI_SETTINGS = {"Comfy.TutorialCompleted": True, "LiteGraph.Canvas.MinFontSizeForLOD": 0,
               "Comfy.Minimap.Visible": False}
UI_TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    for candidate in (os.environ.get("FACEANON_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def server(host, tmp_path_factory):
    """The real server with stand-in models under the workflows' default file names."""
    if find_host()[0] is None:
        pytest.skip(find_host()[1])
    if chromium_path() is None:
        pytest.skip("no Chromium found (/usr/bin/chromium; Debian package `chromium`; or set FACEANON_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed "
                                                      "(pip install -r tests/requirements.txt)")
    pytest.importorskip("onnx", reason="the synthesized insightface pack is written with the `onnx` package")
    from dev.host import ensure_tiny_sd15_checkpoint
    from tests.comfy_server import ComfyServer
    from tests.workflow_assets import face_photo, write_photos

    base = tmp_path_factory.mktemp("comfy_server")
    srv = ComfyServer(base)
    srv.stand_in_checkpoint = host.models_dir / "checkpoints" / ensure_tiny_sd15_checkpoint(host)
    write_photos(base / "input")  # the synthetic stand-ins; the pack copies its example photos itself
    # the user files a fresh frontend asks for, present as after a first session (so that no request fails)
    user = base / "user" / "default"
    for sub in ("workflows", "subgraphs"):
        (user / sub).mkdir(parents=True, exist_ok=True)
    (user / "user.css").write_text("")
    (user / "comfy.templates.json").write_text("[]")
    from PIL import Image

    Image.fromarray(face_photo((160, 200), [], seed=7)).save(base / "input" / "no_face.png")
    srv.start()
    import urllib.request

    req = urllib.request.Request(srv.url + "/api/settings", data=json.dumps(UI_SETTINGS)
                                 .encode(), headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=30).close()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            pg = browser.new_page(viewport=VIEWPORT)
            pg.page_errors = []
            pg.console_errors = []
            pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
            pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
            pg.failed_urls = []  # every request that failed: "STATUS METHOD URL"
            pg.on("response", lambda r: pg.failed_urls.append(f"{r.status} {r.request.method} {r.url}")
                  if r.status >= 400 else None)
            pg.on("requestfailed", lambda r: pg.failed_urls.append(f"failed {r.method} {r.url}"))
            pg.responses = []  # (status, url) of every response
            pg.on("response", lambda r: pg.responses.append((r.status, r.url)))
            pg.goto(server.url, timeout=UI_TIMEOUT_MS)
            pg.wait_for_function("() => window.app?.graph && window.LiteGraph?.registered_node_types?.FaceAnonymize",
                                 timeout=UI_TIMEOUT_MS)
            pg.evaluate("""() => { window.faceanonRuns = [];  // how each queued prompt ended
                for (const ev of ['execution_error', 'execution_success', 'execution_interrupted'])
                    app.api.addEventListener(ev, (e) => window.faceanonRuns.push([ev, e.detail])); }""")
            yield pg
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server_info(server):
    return server.get_json("/object_info")


def visible_dialogs(pg) -> list[str]:
    return pg.evaluate("""() => [...document.querySelectorAll('.p-dialog, [role=dialog]')]
        .filter(d => d.offsetParent !== null || d.getClientRects().length)
        .map(d => d.innerText.slice(0, 500))""")


def toasts(pg, severity: str) -> list[str]:
    return pg.evaluate(f"""() => [...document.querySelectorAll('.p-toast-message-{severity}')]
        .map(t => t.innerText)""")


def load_workflow(pg, workflow: dict) -> None:
    pg.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    pg.wait_for_timeout(300)  # dialogs open asynchronously


def fit_and_screenshot(pg, name: str) -> Path:
    pg.evaluate("""async () => {
        try { await app.extensionManager.command.execute('Comfy.Canvas.FitView'); }
        catch (e) { app.canvas.ds.scale = 0.5; }
        app.graph.setDirtyCanvas(true, true);
    }""")
    pg.wait_for_timeout(400)
    path = SCREENSHOTS / f"{name}.png"
    pg.screenshot(path=str(path))
    return path


def same_value(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-9)
    return a == b


# ---------------------------------------------------------------------------------------------------------------
def test_extension_and_templates_are_served(server, page):
    extensions = server.get_json("/extensions")
    assert any(e.endswith("/faceanon.js") and "comfyui-faceanon" in e for e in extensions), extensions
    templates = server.get_json("/workflow_templates")
    assert sorted(templates.get("comfyui-faceanon", [])) == sorted(STEMS)
    colours = page.evaluate("""() => Object.entries(LiteGraph.registered_node_types)
        .filter(([k, t]) => k.startsWith('FaceAnon')).map(([k, t]) => [k, t.color])""")
    assert len(colours) >= 17 and all(c == PACK_COLOR for _, c in colours), colours
    assert page.evaluate("() => LiteGraph.registered_node_types.KSampler.color") != PACK_COLOR
    assert page.evaluate("() => (app.extensions ?? []).some(e => e.name === 'faceanon.nodes')")
    ours = [e for e in page.console_errors + page.page_errors + page.failed_urls if "faceanon" in e.lower()]
    assert not ours, ours
    # the thumbnails, at the URL the template browser builds for a custom node's template
    # (apiURL(`/workflow_templates/${module}/${name}.jpg`), ComfyUI_frontend's getTemplateThumbnailUrl)
    thumbs = page.evaluate("""async (stems) => Promise.all(stems.map(async (s) => {
        const r = await fetch(`api/workflow_templates/comfyui-faceanon/${s}.jpg`);
        return [s, r.status, r.headers.get('content-type')]; }))""", STEMS)
    assert all(status == 200 and kind == "image/jpeg" for _, status, kind in thumbs), thumbs


def test_template_browser_shows_the_thumbnails(server, page):
    """Opened as a user does (Browse Templates, then the pack's entry under Extensions): the frontend fetches every
    template's thumbnail from the pack (200) and shows each card with its picture decoded."""
    try:
        page.evaluate("async () => { await app.extensionManager.command.execute('Comfy.BrowseTemplates'); }")
    except Exception as e:  # noqa: BLE001 - older frontends name the command differently
        pytest.skip(f"this frontend has no Comfy.BrowseTemplates command ({e})")
    page.get_by_text("comfyui-faceanon", exact=True).first.click(timeout=UI_TIMEOUT_MS)
    urls = {f"{server.url}/api/workflow_templates/comfyui-faceanon/{stem}.jpg" for stem in STEMS}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not urls <= {u for st, u in page.responses if st == 200}:
        page.wait_for_timeout(500)
    assert urls <= {u for st, u in page.responses if st == 200}, sorted(page.responses)[-20:]
    page.wait_for_timeout(1000)
    cards = page.evaluate("""() => [...document.querySelectorAll('[role=dialog] img')]
        .map(i => [i.alt, i.complete && i.naturalWidth > 0])""")
    assert sorted(cards) == sorted([stem, True] for stem in STEMS), cards
    page.screenshot(path=str(SCREENSHOTS / "template_browser.png"))
    # a click on a card opens the template, which shows its example photo (served from the input folder)
    page.click("[role=dialog] img[alt='faceanon_group_photo_sd15']")
    page.wait_for_function("""() => { const n = app.graph.nodes.find(n => n.type === 'LoadImage');
        return n && n.widgets[0].value === 'faceanon_example_group.jpg' && n.imgs?.length
            && n.imgs[0].complete && n.imgs[0].naturalWidth === 1024; }""", timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(300)
    assert visible_dialogs(page) == []
    assert any(st == 200 and "/api/view?" in u and "faceanon_example_group.jpg" in u for st, u in page.responses)


@pytest.mark.parametrize("stem", STEMS)
def test_workflow_loads_in_the_ui(server, page, server_info, stem):
    workflow = server.get_json(f"/api/workflow_templates/comfyui-faceanon/{stem}.json")  # as the Templates menu
    assert workflow == json.loads((WORKFLOWS_DIR / f"{stem}.json").read_text())
    files = {key: (lambda v, ok=names: v in ok) for key, names in FILE_INPUTS.items()}
    assert check_workflow(workflow, server_info, file_inputs=files) == []  # against the real server's /object_info
    errors_before = len(page.page_errors)
    load_workflow(page, workflow)
    assert visible_dialogs(page) == []
    assert toasts(page, "error") == []
    assert page.page_errors[errors_before:] == []
    state = page.evaluate("""async () => {
        const g = app.graph.serialize();
        const p = await app.graphToPrompt();
        const nodes = app.graph.nodes.map(n => ({id: n.id, type: n.type, registered: n.type in
            LiteGraph.registered_node_types, errors: !!n.has_errors, color: n.renderingColor,
            classColor: n.constructor.color}));
        return {serialized: g.nodes, prompt: p.output, nodes};
    }""")
    assert len(state["nodes"]) == len(workflow["nodes"])
    assert all(n["registered"] and not n["errors"] for n in state["nodes"]), state["nodes"]
    assert all(n["classColor"] == PACK_COLOR for n in state["nodes"] if n["type"].startswith("FaceAnon"))
    # widget values as the frontend holds them == the file's (schema widgets only: PreviewAny adds its own)
    loaded = {n["id"]: n for n in state["serialized"]}
    for node in workflow["nodes"]:
        if node["type"] not in server_info or not layout(server_info[node["type"]]).widgets:
            continue
        got = loaded[node["id"]].get("widgets_values")
        assert len(got) == len(node["widgets_values"]) and all(map(same_value, got, node["widgets_values"])), \
            (node["type"], got, node["widgets_values"])
    # the frontend's API form == ours
    ours = ui_to_api(workflow, server_info)
    theirs = state["prompt"]
    assert sorted(theirs) == sorted(ours)
    for node_id, node in ours.items():
        assert theirs[node_id]["class_type"] == node["class_type"]
        extra = set(theirs[node_id]["inputs"]) - set(node["inputs"])
        declared = {w.name for w in layout(server_info[node["class_type"]]).inputs} | \
            {s.name for s in layout(server_info[node["class_type"]]).sockets}
        assert not extra & declared, (node_id, extra)  # only frontend-only widgets (PreviewAny's preview) extra
        for name, value in node["inputs"].items():
            assert same_value(theirs[node_id]["inputs"].get(name), value), (node_id, name)
    fit_and_screenshot(page, stem)


def test_missing_node_dialog_is_detected(page):
    """Control for the check above: an unknown node type raises the frontend's missing-node dialog."""
    workflow = json.loads((WORKFLOWS_DIR / f"{STEMS[1]}.json").read_text())
    workflow["nodes"][1]["type"] = "FaceAnonNoSuchNode"
    load_workflow(page, workflow)
    dialogs = visible_dialogs(page)
    assert dialogs and any("FaceAnonNoSuchNode" in d for d in dialogs), dialogs
    page.keyboard.press("Escape")
    page.wait_for_timeout(300)
    assert visible_dialogs(page) == []


# The model-file inputs the server refuses when the file is missing. (FaceAnonLoadIDAdapter and
# FaceAnonLoadFaceAnalysis list their documented files even when missing, so that their own error can say where to
# get them; that error is checked in tests/test_model_errors.py.)
MODEL_INPUTS = {("CheckpointLoaderSimple", "ckpt_name")}


@pytest.mark.parametrize("stem", STEMS)
def test_template_as_opened_fails_only_on_missing_models(server, page, stem):
    """Before any model is installed, a template queued exactly as opened fails only on its model files: the server
    refuses the checkpoint ('value not in list'), never the photo or another input, and a part of
    the graph that needs no checkpoint (the group photo's detection preview) runs and stops at the missing
    insightface pack, with the loader's error naming it."""
    assert not any((server.models_dir / "checkpoints").iterdir()), "run before the models fixture"
    workflow = server.get_json(f"/api/workflow_templates/comfyui-faceanon/{stem}.json")
    load_workflow(page, workflow)
    with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST",
                              timeout=UI_TIMEOUT_MS) as answer:
        page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    body = answer.value.json()
    errors = [(node["class_type"], e["extra_info"].get("input_name"), e["type"])
              for node in body["node_errors"].values() for e in node["errors"]]
    loaders = {n["type"] for n in workflow["nodes"]} & {kind for kind, _ in MODEL_INPUTS}
    assert {(k, i) for k, i, _ in errors} == {(k, i) for k, i in MODEL_INPUTS if k in loaders}, errors
    assert {t for _, _, t in errors} == {"value_not_in_list"}, errors
    if answer.value.status == 400:
        page.server_refusals = getattr(page, "server_refusals", 0) + 1
    else:  # the outputs that need no checkpoint were queued: they must stop at the missing face pack only
        assert answer.value.status == 200, answer.value.text()[:2000]
        prompt_id = body["prompt_id"]
        page.wait_for_function("(id) => window.faceanonRuns.some(([ev, d]) => d?.prompt_id === id)", arg=prompt_id,
                               timeout=UI_TIMEOUT_MS)
        ends = page.evaluate("(id) => window.faceanonRuns.filter(([ev, d]) => d?.prompt_id === id)", prompt_id)
        event, detail = ends[0]
        assert event == "execution_error" and detail["node_type"] == "FaceAnonLoadFaceAnalysis", ends
        assert "face model pack 'buffalo_l' was not found" in detail["exception_message"], detail
        assert "buffalo_l.zip" in detail["exception_message"]  # where to get it
    page.wait_for_timeout(300)
    page.keyboard.press("Escape")  # the frontend's validation / execution error dialog
    page.wait_for_timeout(300)


def test_system_check_node_shows_its_report(server, page):
    """FaceAnonSystemCheck alone on the canvas, queued: the report is shown on the node (a text box) and names the
    missing files with their source; the summary under it is a warning."""
    page.evaluate("""() => { app.graph.clear(); const n = LiteGraph.createNode('FaceAnonSystemCheck');
        n.pos = [100, 100]; app.graph.add(n); }""")
    page.evaluate("() => { try { app.extensionManager.toast.removeAll(); } catch (e) {} }")
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    page.wait_for_function("""() => app.graph.nodes[0].widgets?.find(w => w.name === 'faceanon_text')
        ?.element?.value?.includes('FaceAnon system check')""", timeout=UI_TIMEOUT_MS)
    text = page.evaluate("() => app.graph.nodes[0].widgets.find(w => w.name === 'faceanon_text').element.value")
    assert str(server.models_dir / "ipadapter") in text and "Model folders searched" in text
    assert "ip-adapter-faceid_sd15.bin (96.7 MB) belongs in ComfyUI/models/ipadapter/" in text
    status = page.evaluate("() => app.graph.nodes[0].faceanonStatus")
    assert status["level"] == "warn" and status["lines"][0].startswith("FaceAnon system check: WARNING")
    assert page.evaluate("() => app.graph.serialize().nodes[0].widgets_values ?? []") in ([], None)
    fit_and_screenshot(page, "system_check")
    page.evaluate("() => { try { app.extensionManager.toast.removeAll(); } catch (e) {} }")


@pytest.fixture(scope="module")
def models(server, page):
    """The stand-in models under the workflows' default file names, installed while the server runs."""
    from tests.workflow_assets import install_tiny_models

    ckpts = sorted(v for (kind, _), names in FILE_INPUTS.items() if kind == "CheckpointLoaderSimple"
                   for v in names)
    adapters = sorted(v for (kind, _), names in FILE_INPUTS.items() if kind == "FaceAnonLoadIDAdapter"
                      for v in names)
    install_tiny_models(server.models_dir, server.stand_in_checkpoint, ckpts, adapters)
    page.evaluate("async () => { await app.refreshComboInNodes?.(); }")
    return server.models_dir


def _use_stand_in_photo(page) -> None:
    """The synthesized detector finds magenta discs, not real faces: swap the example photo for its stand-in."""
    from tests.workflow_assets import STAND_IN_PHOTOS

    photo = page.evaluate("() => app.graph.nodes.find(n => n.type === 'LoadImage').widgets[0].value")
    _set_widget(page, "LoadImage", "image", STAND_IN_PHOTOS[photo])


def _queue_and_wait(page, node_type: str, timeout_s: float = 240) -> dict:
    page.evaluate("() => { try { app.extensionManager.toast.removeAll(); } catch (e) {} }")  # earlier runs' toasts
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = page.evaluate("""(t) => { const n = app.graph.nodes.find(n => n.type === t);
            return n && n.faceanonStatus ? n.faceanonStatus : null; }""", node_type)
        if status:
            return status
        dialogs = visible_dialogs(page)
        assert not dialogs, f"error while running: {dialogs}"
        time.sleep(1)
    raise AssertionError(f"no report on {node_type} after {timeout_s} s")


def _set_widget(page, node_type: str, name: str, value) -> None:
    page.evaluate("""([t, name, value]) => { const n = app.graph.nodes.find(n => n.type === t);
        const w = n.widgets.find(w => w.name === name); w.value = value; w.callback?.(value); }""",
                  [node_type, name, value])


def test_group_photo_runs_in_the_browser_and_reports(server, page, models):
    stem = "faceanon_group_photo_sd15"
    workflow = server.get_json(f"/api/workflow_templates/comfyui-faceanon/{stem}.json")
    load_workflow(page, workflow)
    _use_stand_in_photo(page)
    _set_widget(page, "FaceAnonymize", "overrides", FAST_OVERRIDES)
    out_dir, temp_dir = server.base / "output", server.base / "temp"
    before = {p for p in out_dir.rglob("*") if p.is_file()}
    status = _queue_and_wait(page, "FaceAnonymize")
    assert status == {"level": "ok", "lines": ["3 face(s) found, 3 anonymized"]}
    page.wait_for_function("""() => app.graph.nodes.filter(n => n.type === 'FaceAnonSaveImage' ||
        n.type === 'FaceAnonPreviewImage').every(n => n.imgs?.length)""", timeout=UI_TIMEOUT_MS)
    fit_and_screenshot(page, f"{stem}_after_run")
    new = sorted({p for p in out_dir.rglob("*") if p.is_file()} - before)
    assert [p.parent.name for p in new] == ["faceanon"] and new[0].name.startswith("group_")
    from tests.test_workflows_host import png_text_chunks

    assert png_text_chunks(new[0]) == {}  # the page sent prompt + workflow; none of it is in the file
    temp = sorted(p.name for p in temp_dir.rglob("*") if p.is_file())
    assert temp and all(n.startswith("faceanon_preview_") and n.endswith(".png") for n in temp), temp
    for name in temp:
        assert png_text_chunks(temp_dir / name) == {}
    assert toasts(page, "warn") == []


def test_image_without_face_is_flagged_in_the_ui(server, page, models):
    stem = "faceanon_group_photo_sd15"
    workflow = server.get_json(f"/api/workflow_templates/comfyui-faceanon/{stem}.json")
    load_workflow(page, workflow)
    _set_widget(page, "FaceAnonymize", "overrides", FAST_OVERRIDES)
    _set_widget(page, "FaceAnonymize", "if_no_face", "flag and pass through")
    _set_widget(page, "LoadImage", "image", "no_face.png")
    status = _queue_and_wait(page, "FaceAnonymize")
    assert status["level"] == "warn"
    assert status["lines"] == ["0 face(s) found, 0 anonymized", "image 0: no face found, NOT anonymized"]
    page.wait_for_function("() => document.querySelectorAll('.p-toast-message-warn').length > 0",
                           timeout=UI_TIMEOUT_MS)
    assert any("NOT anonymized" in t for t in toasts(page, "warn"))
    fit_and_screenshot(page, f"{stem}_no_face_flagged")


def test_privacy_check_runs_and_verify_reports(server, page, models):
    stem = "faceanon_privacy_check_sd15"
    workflow = server.get_json(f"/api/workflow_templates/comfyui-faceanon/{stem}.json")
    load_workflow(page, workflow)
    _use_stand_in_photo(page)
    _set_widget(page, "FaceAnonymize", "overrides", FAST_OVERRIDES)
    status = _queue_and_wait(page, "FaceAnonVerify")
    head = status["lines"][0]
    assert head.startswith("identity check: ") and "face(s) pass" in head, status
    # stand-in models (random weights) may or may not change the synthetic face enough: either way it is shown
    assert status["level"] == ("warn" if "FAIL" in head else "ok")
    anonymize = page.evaluate("() => app.graph.nodes.find(n => n.type === 'FaceAnonymize').faceanonStatus")
    assert anonymize == {"level": "ok", "lines": ["1 face(s) found, 1 anonymized"]}
    page.wait_for_function("""() => app.graph.nodes.find(n => n.type === 'FaceAnonSaveImage').imgs?.length""",
                           timeout=UI_TIMEOUT_MS)
    fit_and_screenshot(page, f"{stem}_after_run")
    from tests.test_workflows_host import png_text_chunks

    saved = sorted((server.base / "output" / "faceanon").glob("checked_*.png"))
    assert len(saved) == 1 and png_text_chunks(saved[0]) == {}


# The frontend's own probe for an optional stylesheet in its web root (ComfyUI_frontend asks for /user.css at
# start; a user can put one there): the only request allowed to fail.
FRONTEND_PROBES = ("/user.css",)


def test_no_request_of_the_page_failed(server, page):
    """Over the whole session (load, templates, thumbnails, example photos, runs): no request to the ComfyUI server
    failed, except the deliberate refusals of the missing-model test above (400 on POST /api/prompt) and the
    frontend's probe above. (Requests the frontend makes to the internet, e.g. api.comfy.org's node registry,
    fail on an offline machine and are not the pack's: only the server's own URLs are checked.)"""
    ours = [f for f in page.failed_urls if f.split(" ", 2)[2].startswith(server.url + "/")]
    failed = [f for f in ours if f.split(" ", 2)[2].split("?")[0] not in {server.url + p for p in FRONTEND_PROBES}]
    refusals = [f for f in failed if f.startswith("400 POST ") and f.endswith("/api/prompt")]
    assert len(refusals) == getattr(page, "server_refusals", 0)  # the missing-model refusals, none other
    assert [f for f in failed if f not in refusals] == [], "\n".join(failed)
