"""No module the ComfyUI nodes run can write a file, except the metadata-free image and video savers (nodes/save.py).

An inversion holds the original image and an identity embedding identifies the person: neither may reach the disk.
This reads the source (AST) of nodes/ and faceanon/ for every call that writes a file (open() for writing,
torch.save, numpy save / tofile, safetensors save_file, pickle / json dump to a file, Path.write_*, PIL .save) and
allows only the PNG and MP4 writes of nodes/save.py and the copy of the pack's own public-domain example photos into
ComfyUI's input folder (faceanon/examples.py, never over an existing file). faceanon/evaluate is the offline evaluation
harness and faceanon/run the headless runner: command-line tools that write their reports, outputs and manifest, never
run by a node; they are not scanned (tests/test_run_host.py checks what the runner writes). The runtime side is
tests/test_workflows_host.py (the only new files after running every shipped workflow are the saved images).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_TOOLS = {"evaluate", "run"}  # faceanon/evaluate, faceanon/run
SCANNED = [ROOT / "__init__.py", *sorted((ROOT / "nodes").rglob("*.py")),
           *sorted(p for p in (ROOT / "faceanon").rglob("*.py") if not CLI_TOOLS & set(p.relative_to(ROOT).parts))]
WRITING_ATTRIBUTES = {"save", "save_file", "savez", "savez_compressed", "tofile", "dump", "write_text",
                      "write_bytes", "save_pretrained", "to_csv", "imwrite"}
# Image.fromarray(...).save(path) without pnginfo; av.open(path, mode="w") of the tag-free video saver
# and the exclusive-create copy of the example photos
ALLOWED = {("nodes/save.py", "save"), ("nodes/save.py", "open for writing"),
           ("faceanon/examples.py", "open for writing")}


def writes(path: Path, root: Path = ROOT) -> list[tuple[str, int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                 None)
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and not set("wax+") & set(mode.value):
                continue
            if mode is None:
                continue  # open(path): read-only
            found.append((str(path.relative_to(root)), node.lineno, "open for writing"))
        elif name in WRITING_ATTRIBUTES and isinstance(func, ast.Attribute):
            found.append((str(path.relative_to(root)), node.lineno, name))
    return found


def test_only_the_image_savers_write_files():
    assert len(SCANNED) > 10
    found = [w for p in SCANNED for w in writes(p)]
    unexpected = [w for w in found if (w[0], w[2]) not in ALLOWED]
    assert not unexpected, f"file writes in modules the nodes run: {unexpected}"
    assert sorted((w[0], w[2]) for w in found) == sorted(ALLOWED)  # each allowed write is still there, once


def test_the_scanner_finds_writes(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import torch, json\n"
                      "def f(x, p):\n"
                      "    torch.save(x, p)\n"
                      "    with open(p, 'wb') as fh:\n"
                      "        json.dump(x, fh)\n"
                      "    open(p).read()\n")
    kinds = [w[2] for w in writes(sample, root=tmp_path)]
    assert kinds == ["save", "open for writing", "dump"]
