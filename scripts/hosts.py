"""Find or make the ComfyUI trees the host tests run in; print their paths, one per line, the main one first.

Where the hosts come from (the first rule that gives any):
1. `COMFYUI_PATH`: that ComfyUI.
2. `FACEANON_HOST_ARCHIVES`: ComfyUI archives (`.tar.gz` holding one folder `ComfyUI/`, as in `shared/hosts/`),
   separated by `:`; each is unpacked once into `.hosts/<archive name>/ComfyUI` (reused while the archive's size and
   time are unchanged). `.ci/run` names the two archives beside the repository, so CI tests both versions on any
   machine. An explicit list wins over `~/ComfyUI`.
3. `~/ComfyUI`, the conventional place the README names.
4. A user's machine with internet: a shallow clone of the pinned release `PINNED` into `.hosts/`.

Standard library only: it runs before any venv exists.

    python3 scripts/hosts.py            # prints the host paths
    python3 scripts/hosts.py --explain  # also says, on stderr, which rule chose them
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HOSTS_DIR = REPO_ROOT / ".hosts"
# The same trees as shared/hosts/ (its README): version, repository, commit.
PINNED = [
    ("0.8.0", "https://github.com/pollockjj/ComfyUI", "618b803d314a525faca8f8163d85eaa9ebc1d774"),
    ("0.3.64", "https://github.com/Comfy-Org/ComfyUI", "a125cd84b054a57729b5eecab930ca9408719832"),
]


class HostError(RuntimeError):
    """No host could be found or made; the message says what was tried and how to fix it."""


def is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "samplers.py").is_file() and (path / "nodes.py").is_file()


def unpack(archive: Path, into: Path = HOSTS_DIR) -> Path:
    """Unpack `archive` (one top folder `ComfyUI/`) into `into/<archive stem>/`, once; return the ComfyUI path."""
    if not archive.is_file():
        raise HostError(f"host archive {archive} does not exist (named in FACEANON_HOST_ARCHIVES); expected a "
                        "ComfyUI .tar.gz such as shared/hosts/comfyui-0.8.0.tar.gz")
    name = archive.name.removesuffix(".tar.gz").removesuffix(".tgz")
    dest = into / name
    stamp = dest / ".unpacked-from"
    signature = f"{archive.resolve()} {archive.stat().st_size} {int(archive.stat().st_mtime)}"
    host = dest / "ComfyUI"
    if stamp.is_file() and stamp.read_text() == signature and is_comfyui(host):
        return host
    if dest.exists():
        subprocess.run(["rm", "-rf", str(dest)], check=True)
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    if not is_comfyui(host):
        raise HostError(f"{archive} did not unpack to a ComfyUI tree at {host} (no comfy/samplers.py or nodes.py)")
    stamp.write_text(signature)
    return host


def clone(version: str, url: str, commit: str, into: Path = HOSTS_DIR) -> Path:
    """Shallow-fetch `commit` of `url` into `into/comfyui-<version>/ComfyUI`, once; return its path."""
    host = into / f"comfyui-{version}" / "ComfyUI"
    if is_comfyui(host):
        return host
    host.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(host)]
    try:
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "fetch", "-q", "--depth", "1", url, commit], check=True)
        subprocess.run([*git, "checkout", "-q", "FETCH_HEAD"], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise HostError(f"could not clone ComfyUI {version} ({url} at {commit}): {e}. Without internet, set "
                        "COMFYUI_PATH to a ComfyUI checkout or FACEANON_HOST_ARCHIVES to ComfyUI archives") from e
    return host


def find_hosts(environ=os.environ) -> tuple[list[Path], str]:
    """Return (host paths, the main one first; which rule chose them)."""
    env = environ.get("COMFYUI_PATH", "").strip()
    if env:
        path = Path(env).expanduser()
        if not is_comfyui(path):
            raise HostError(f"COMFYUI_PATH={path} is not a ComfyUI tree (no comfy/samplers.py or nodes.py)")
        return [path], "COMFYUI_PATH"
    archives = [a for a in environ.get("FACEANON_HOST_ARCHIVES", "").split(":") if a.strip()]
    if archives:
        return [unpack(Path(a).expanduser().resolve()) for a in archives], "FACEANON_HOST_ARCHIVES"
    home = Path(environ.get("HOME", str(Path.home()))) / "ComfyUI"
    if is_comfyui(home):
        return [home], "~/ComfyUI"
    version, url, commit = PINNED[0]
    return [clone(version, url, commit)], f"clone of ComfyUI {version}"


def main(argv: list[str]) -> int:
    try:
        hosts, rule = find_hosts()
    except HostError as e:
        sys.stderr.write(f"hosts: {e}\n")
        return 1
    if "--explain" in argv:
        sys.stderr.write(f"hosts: from {rule}: {', '.join(map(str, hosts))}\n")
    sys.stdout.write("".join(f"{h}\n" for h in hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
