#!/usr/bin/env bash
# The whole test suite, from a fresh checkout (the README's test command):
#   0. finds or makes the ComfyUI hosts (scripts/hosts.py: COMFYUI_PATH, else FACEANON_HOST_ARCHIVES unpacked into
#      .hosts/, else ~/ComfyUI, else a clone of the pinned release) and sets up the two venvs (idempotent);
#   1. ruff over the repository;
#   2. the main suite in .venv against the first host (maths, faces, identity adapter, nodes, host and browser tests);
#   3. the host and browser tests again against every further host (each with its own frontend packages; the Ray
#      cluster test runs once, against the first);
#   4. the evaluation harness suite in .venv-eval (mediapipe + dlib need their own environment).
# .ci/run names both archives of shared/hosts/ and sets FACEANON_STRICT_SKIPS=1: there a skipped test fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HOSTS_TXT="$(python3 scripts/hosts.py --explain)"
mapfile -t HOSTS <<< "$HOSTS_TXT"
export COMFYUI_PATH="${HOSTS[0]}"
bash scripts/setup_test_env.sh
for host in "${HOSTS[@]:1}"; do
    bash scripts/setup_host_site.sh "$host"
done
bash scripts/setup_eval_env.sh
PYTEST=(-m pytest -q -p no:cacheprovider --continue-on-collection-errors)
status=0
.venv/bin/python -m ruff check . || status=$?
echo "test.sh: main suite against ComfyUI at ${HOSTS[0]}"
.venv/bin/python "${PYTEST[@]}" --ignore=tests/evaluation tests "$@" || status=$?
for host in "${HOSTS[@]:1}"; do
    echo "test.sh: host and browser tests against ComfyUI at $host"
    COMFYUI_PATH="$host" PYTHONPATH="$(dirname "$host")/site${PYTHONPATH:+:$PYTHONPATH}" \
        .venv/bin/python "${PYTEST[@]}" -m "(host or browser) and not ray" --ignore=tests/evaluation tests "$@" || status=$?
done
.venv-eval/bin/python "${PYTEST[@]}" tests/evaluation "$@" || status=$?
exit $status
