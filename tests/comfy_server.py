"""The real ComfyUI server (main.py) with this pack, on loopback, in a throw-away base directory.

Used by the browser test. The server runs in its own process with `--base-directory <tmp>`: models, input, output,
temp, user and custom_nodes all live there, and custom_nodes/<PACK_DIR> is a symlink to this repository, so ComfyUI
loads the pack exactly as a user's install does (WEB_DIRECTORY, workflows/ as templates). It is stopped by its PID
(never by name), with bounded waits.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dev.host import REPO_ROOT, find_host, missing_host_requirements

logger = logging.getLogger(__name__)

PACK_DIR = "comfyui-faceanon"  # the folder name a git clone gives


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_python(host: Path) -> tuple[str | None, str]:
    """An interpreter that can run ComfyUI: this one if it has ComfyUI's requirements, else the host's venv."""
    if not missing_host_requirements():
        return sys.executable, ""
    for candidate in (host / "venv" / "bin" / "python", host / ".venv" / "bin" / "python"):
        if candidate.is_file():
            return str(candidate), ""
    return None, f"this interpreter lacks ComfyUI's requirements ({missing_host_requirements()}) and {host} has no venv"


class ComfyServer:
    """`with ComfyServer(base) as server:` starts main.py and waits for /object_info; the exit stops it."""

    def __init__(self, base: Path, start_timeout: float = 180.0):
        host, why = find_host()
        if host is None:
            raise RuntimeError(why)
        python, why = server_python(host)
        if python is None:
            raise RuntimeError(why)
        self.host, self.python, self.base = host, python, Path(base)
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for sub in ("custom_nodes", "input", "output", "temp", "user", "models/checkpoints", "models/ipadapter",
                    "models/insightface/models"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_DIR
        if not link.exists():
            link.symlink_to(REPO_ROOT, target_is_directory=True)
        self.log_path = self.base / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def models_dir(self) -> Path:
        return self.base / "models"

    def start(self) -> None:
        cmd = [self.python, str(self.host / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base), "--disable-auto-launch", "--disable-api-nodes",
               "--database-url", "sqlite:///:memory:", "--preview-method", "none"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=str(self.host), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/object_info/FaceAnonymize", timeout=5) as r:
                    if r.status == 200 and json.loads(r.read()):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # this process only, by its PID
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def get_json(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def __enter__(self) -> ComfyServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
