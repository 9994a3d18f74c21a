"""The test setup itself: where the ComfyUI hosts come from (scripts/hosts.py) and CI's rule that a skip fails."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from scripts import hosts

REPO_ROOT = Path(__file__).resolve().parents[1]


def _fake_archive(tmp_path: Path, name: str, marker: str) -> Path:
    """A .tar.gz holding one folder `ComfyUI/` with the two files that make a tree a ComfyUI."""
    src = tmp_path / f"src-{name}" / "ComfyUI"
    (src / "comfy").mkdir(parents=True)
    (src / "comfy" / "samplers.py").write_text(marker)
    (src / "nodes.py").write_text("")
    archive = tmp_path / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="ComfyUI")
    return archive


def test_archives_unpack_once_in_order(tmp_path):
    a = _fake_archive(tmp_path, "comfyui-9.9.9", "new")
    b = _fake_archive(tmp_path, "comfyui-0.0.1", "old")
    env = {"FACEANON_HOST_ARCHIVES": f"{a}:{b}", "HOME": str(tmp_path)}
    into = tmp_path / "hosts"
    paths = [hosts.unpack(Path(p), into) for p in env["FACEANON_HOST_ARCHIVES"].split(":")]
    assert [p.parent.name for p in paths] == ["comfyui-9.9.9", "comfyui-0.0.1"]
    assert (paths[0] / "comfy" / "samplers.py").read_text() == "new"
    # a second call reuses the tree (a file added inside survives), a changed archive is unpacked anew
    (paths[0] / "kept").write_text("x")
    assert hosts.unpack(a, into) == paths[0] and (paths[0] / "kept").exists()
    a2 = _fake_archive(tmp_path / "again", "comfyui-9.9.9", "newer")
    assert (hosts.unpack(a2, into) / "comfy" / "samplers.py").read_text() == "newer"
    assert not (paths[0] / "kept").exists()


def test_rules_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(hosts, "HOSTS_DIR", tmp_path / "hosts")
    monkeypatch.setattr(hosts, "unpack", lambda archive, into=None: hosts.HOSTS_DIR / archive.name / "ComfyUI")
    home = tmp_path / "home"
    (home / "ComfyUI" / "comfy").mkdir(parents=True)
    (home / "ComfyUI" / "comfy" / "samplers.py").write_text("")
    (home / "ComfyUI" / "nodes.py").write_text("")
    archives = f"{tmp_path}/x.tar.gz:{tmp_path}/y.tar.gz"

    # 1. COMFYUI_PATH wins over everything
    paths, rule = hosts.find_hosts({"COMFYUI_PATH": str(home / "ComfyUI"), "FACEANON_HOST_ARCHIVES": archives,
                                    "HOME": str(home)})
    assert (paths, rule) == ([home / "ComfyUI"], "COMFYUI_PATH")
    # 2. named archives, all of them, before ~/ComfyUI
    paths, rule = hosts.find_hosts({"FACEANON_HOST_ARCHIVES": archives, "HOME": str(home)})
    assert rule == "FACEANON_HOST_ARCHIVES" and [p.parent.name for p in paths] == ["x.tar.gz", "y.tar.gz"]
    # 3. ~/ComfyUI
    assert hosts.find_hosts({"HOME": str(home)}) == ([home / "ComfyUI"], "~/ComfyUI")
    # 4. otherwise the pinned release is cloned
    cloned = []
    monkeypatch.setattr(hosts, "clone", lambda *a: cloned.append(a) or tmp_path / "clone" / "ComfyUI")
    paths, rule = hosts.find_hosts({"HOME": str(tmp_path / "nobody")})
    assert cloned == [hosts.PINNED[0]] and rule.startswith("clone of ComfyUI 0.8.0")


def test_bad_inputs_say_what_was_seen(tmp_path):
    with pytest.raises(hosts.HostError, match="is not a ComfyUI tree"):
        hosts.find_hosts({"COMFYUI_PATH": str(tmp_path)})
    with pytest.raises(hosts.HostError, match="does not exist .*FACEANON_HOST_ARCHIVES"):
        hosts.unpack(tmp_path / "missing.tar.gz", tmp_path / "hosts")
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(hosts.HostError, match="did not unpack to a ComfyUI tree"):
        hosts.unpack(empty, tmp_path / "hosts")


def test_pinned_releases_match_the_shared_archives():
    archives = [a for a in os.environ.get("FACEANON_HOST_ARCHIVES", "").split(":") if a]
    readme = (Path(archives[0]).parent if archives else REPO_ROOT.parent / "shared" / "hosts") / "README.md"
    if not readme.is_file():
        pytest.skip(f"no {readme} beside the repository")
    text = readme.read_text()
    for version, url, commit in hosts.PINNED:
        assert f"comfyui-{version}.tar.gz" in text and commit in text, (version, commit)
        assert url.removeprefix("https://") in text, url


@pytest.mark.parametrize("strict", ["1", ""])
def test_strict_mode_turns_skips_into_failures(tmp_path, strict):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text(  # the suite's own hooks, imported from its conftest
        f"import sys\nsys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n")
    (tests / "test_skips.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    assert True\n\n"
        "def test_skips():\n    pytest.skip('no ComfyUI here')\n")
    (tests / "test_skipped_module.py").write_text(
        "import pytest\npytest.importorskip('no_such_module_anywhere')\n\ndef test_x():\n    pass\n")
    env = {**os.environ, "FACEANON_STRICT_SKIPS": strict}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--continue-on-collection-errors", str(tests)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if strict:
        assert run.returncode == 1, run.stdout  # a skip inside a test fails it; a skip at collection is an error
        assert "1 failed, 1 passed, 1 error" in run.stdout, run.stdout
        assert "no ComfyUI here" in run.stdout and "no_such_module_anywhere" in run.stdout, run.stdout
    else:
        assert run.returncode == 0, run.stdout
        assert "1 passed, 2 skipped" in run.stdout, run.stdout
