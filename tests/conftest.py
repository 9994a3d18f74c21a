"""Shared fixtures. Host-independent tests need only torch; host tests use the `host` fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # `import faceanon` (the host-independent package)
# Bind `tests` (and `dev`) to this repository's packages now: a booted ComfyUI puts its own folder, which has a
# `tests/` of its own, first on sys.path, and a later `from tests.x import ...` would find that one.
import dev  # noqa: E402, F401
import tests  # noqa: E402, F401

_HOST = None
# CI (.ci/run) sets this: a skipped test is a failure, so a green run means every host and browser test ran.
STRICT_SKIPS = os.environ.get("FACEANON_STRICT_SKIPS") == "1"


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """A real ComfyUI loaded in-process with this pack (skips with the reason when there is none)."""
    global _HOST
    if _HOST is None:
        from dev.host import ComfyHost, find_host, missing_host_requirements

        path, why = find_host()
        if path is None:
            pytest.skip(why)
        missing = missing_host_requirements()
        if missing:
            pytest.skip(f"ComfyUI found at {path} but this interpreter ({sys.executable}) lacks its requirement "
                        f"{missing}; install them with `pip install -r {path}/requirements.txt`")
        _HOST = ComfyHost(path, tmp_path_factory.mktemp("comfy_host"))
    return _HOST


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "host" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.host)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is 5-10x faster than two on a shared, busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _strict(report) -> None:
    """Turn a skip into a failure that keeps the skip's reason (strict mode only)."""
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and FACEANON_STRICT_SKIPS=1 (CI) makes a skip a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _strict(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _strict(outcome.get_result())
