#!/usr/bin/env bash
# Create (or update) the test venv `.venv` in the repository root: torch, the pack's requirements, the test
# requirements, and, when a ComfyUI is found (COMFYUI_PATH, else ~/ComfyUI), that ComfyUI's requirements, so that
# the host tests run in-process. Idempotent: a second run only checks what is installed.
#
#   scripts/setup_test_env.sh
#   FACEANON_VENV=/elsewhere scripts/setup_test_env.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACEANON_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
# torch 2.14.1 + torchvision 0.29.1: the newest pair this project's CI machines serve from local disk. The host
# provides torch in real installs; it is not a requirement of the pack.
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --progress-bar off --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c 'import torch, torchvision' >/dev/null 2>&1; then
    "${PIP[@]}" "${TORCH_PINS[@]}"
fi
"${PIP[@]}" -r "$ROOT/requirements.txt" -r "$ROOT/tests/requirements.txt"

HOST="${COMFYUI_PATH:-$HOME/ComfyUI}"
if [ -f "$HOST/requirements.txt" ] && [ -f "$HOST/comfy/samplers.py" ]; then
    echo "setup_test_env: ComfyUI found at $HOST: installing its requirements for the host tests"
    # keep torch as installed above; transformers >= 5 no longer pulls requests, which ComfyUI imports
    grep -v -E '^(torch|torchvision|torchaudio)([<>=!~ ]|$)' "$HOST/requirements.txt" > "$VENV/.host-requirements.txt"
    "${PIP[@]}" -r "$VENV/.host-requirements.txt" requests
    # ComfyUI's audio nodes import torchaudio at load time; its wheels declare no torch requirement, so --no-deps
    # keeps the torch installed above.
    if ! "$VENV/bin/python" -c 'import torchaudio' >/dev/null 2>&1; then
        "${PIP[@]}" --no-deps torchaudio
    fi
else
    echo "setup_test_env: no ComfyUI at $HOST (set COMFYUI_PATH): host tests will be skipped"
fi
# The browser test (tests/test_browser.py) drives the system Chromium through Playwright (no browser download).
if [ -x /usr/bin/chromium ]; then
    :
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup_test_env: installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || echo "setup_test_env: could not install chromium: the browser test will be skipped"
else
    echo "setup_test_env: no /usr/bin/chromium (install the Debian package chromium as root): browser test skipped"
fi
echo "setup_test_env: ready: $VENV"
