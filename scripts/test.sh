#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: sets up the two venvs (idempotent), then runs
#   1. the main suite in .venv (maths, faces, identity adapter, nodes; host tests in-process when a ComfyUI is found
#      at COMFYUI_PATH or ~/ComfyUI, skipped with the reason otherwise);
#   2. the evaluation harness suite in .venv-eval (mediapipe + dlib need their own environment).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_test_env.sh
bash scripts/setup_eval_env.sh
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/evaluation tests "$@" || status=$?
.venv-eval/bin/python -m pytest -q -p no:cacheprovider tests/evaluation "$@" || status=$?
exit $status
