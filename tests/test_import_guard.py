"""The host-independent package imports nothing from ComfyUI: every module of `faceanon` imports with ComfyUI's
modules blocked (a fresh interpreter in which importing any of them raises)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# ComfyUI's top-level modules and packages (comfyui_api.md): what a custom node can import from the host
HOST_MODULES = ("comfy", "comfy_api", "comfy_api_nodes", "comfy_execution", "comfy_extras", "comfy_config",
                "folder_paths", "nodes", "server", "execution", "latent_preview", "node_helpers", "app", "utils")

GUARD = """
import importlib, importlib.abc, pkgutil, sys
BLOCKED = set({blocked!r})

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"host module {{name}} imported by the host-independent package")
        return None

sys.meta_path.insert(0, Block())
sys.path.insert(0, {root!r})
import faceanon
names = [m.name for m in pkgutil.walk_packages(faceanon.__path__, "faceanon.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print(len(names))
"""


def run_guarded(blocked=HOST_MODULES):
    code = GUARD.format(blocked=tuple(blocked), root=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def test_faceanon_imports_with_comfyui_blocked():
    run = run_guarded()
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) >= 30  # every submodule was imported, not just the package


def test_the_guard_catches_a_host_import():
    """Control: blocking a module the package does import makes the same check fail."""
    run = run_guarded(HOST_MODULES + ("torch",))
    assert run.returncode != 0 and "host module torch" in run.stderr


def _imported_top_modules(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_tools_import_dev_not_tests_and_the_pack_imports_neither():
    offenders = []
    for folder, banned in (("benchmarks", {"tests"}), ("scripts", {"tests"}), ("dev", {"tests"}),
                           ("faceanon", {"tests", "dev"}), ("nodes", {"tests", "dev"})):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            bad = _imported_top_modules(path) & banned
            if bad:
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}")
    assert offenders == []
    assert "dev" in _imported_top_modules(REPO_ROOT / "benchmarks" / "bench_faceid.py")  # the check reads imports
