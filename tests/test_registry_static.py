"""Registry readiness: one version in pyproject, README and CHANGELOG; [tool.comfy] complete and pointing at files
that exist; its Models are the model table's single files (faceanon/model_files.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from PIL import Image

from faceanon import model_files

REPO_ROOT = Path(__file__).resolve().parents[1]
RAW = "https://raw.githubusercontent.com/faceanon/comfyui-faceanon/main/"


def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_one_version_everywhere():
    version = pyproject()["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.findall(r"\*\*Version (\d+\.\d+\.\d+)\*\*", readme) == [version]
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M)[0] == version  # the newest entry


def test_tool_comfy_is_complete():
    project, comfy = pyproject()["project"], pyproject()["tool"]["comfy"]
    assert project["name"] and project["description"] and project["license"] == {"file": "LICENSE"}
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"] == ">=0.3.64"
    for key, limit in (("Icon", (800, 400)), ("banner_url", None)):
        assert comfy[key].startswith(RAW), key
        path = REPO_ROOT / comfy[key][len(RAW):]
        with Image.open(path) as img:  # the file the URL will serve once pushed
            if limit:
                assert img.size[0] <= limit[0] and img.size[1] <= max(limit[1], img.size[0])
    # Models: exactly the table's single files, at their folder and URL
    want = [{"location": f"/{m.folder}/{m.name}", "model_url": m.source} for m in model_files.MODEL_FILES
            if m.folder != "insightface"]
    assert comfy["Models"] == want
    # requirements.txt and [project] dependencies agree
    reqs = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
            if line.split("#")[0].strip()]
    assert sorted(project["dependencies"]) == sorted(reqs)
