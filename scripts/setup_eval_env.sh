#!/usr/bin/env bash
# Create (or update) the evaluation venv `.venv-eval` in the repository root.
#
# The evaluation stack (dlib's face recognizer, mediapipe 0.10.21's face mesh, scikit-image, matplotlib) lives in
# its own venv because `onnx`/`insightface` (ComfyUI side of the pack) break mediapipe 0.10.21 when they share one.
# No torch is installed here.
#
#   scripts/setup_eval_env.sh            # create or update .venv-eval (a no-op when it is already up to date)
#   PYTHON=python3.12 scripts/setup_eval_env.sh
#   FACEANON_EVAL_VENV=/somewhere/else scripts/setup_eval_env.sh
#   scripts/setup_eval_env.sh --force    # rebuild from scratch
#
# Then:
#   .venv-eval/bin/python -m faceanon.evaluate --help
#   .venv-eval/bin/python -m pytest tests/evaluation -q
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACEANON_EVAL_VENV:-$ROOT/.venv-eval}"
REQ="$ROOT/tests/evaluation/requirements.txt"
STAMP="$VENV/.faceanon-eval-stamp"
SMOKE='import dlib, face_recognition_models, mediapipe, cv2, skimage, matplotlib, numpy, pytest
assert hasattr(mediapipe, "solutions"), "mediapipe without mp.solutions"'

force=0
if [ "${1:-}" = "--force" ]; then force=1; fi

if [ ! -f "$REQ" ]; then
    echo "setup_eval_env: $REQ not found (run this script from a FaceAnon checkout)" >&2
    exit 2
fi

pick_python() {
    local candidates=()
    if [ -n "${PYTHON:-}" ]; then candidates=("$PYTHON"); else candidates=(python3.12 python3.11 python3); fi
    local py
    for py in "${candidates[@]}"; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    echo "setup_eval_env: need Python 3.11 or 3.12 (numpy 2.4 needs >= 3.11, mediapipe 0.10.21 has no wheel" \
        "for 3.13); tried: ${candidates[*]}. Set PYTHON=/path/to/python3.11" >&2
    return 1
}

PY="$(pick_python)"
# The stamp records the requirements file's hash and the interpreter; a matching stamp plus a working import
# means there is nothing to do (about a second).
want="$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$REQ")"
want="$want $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

if [ "$force" = 0 ] && [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
    "$VENV/bin/python" -c "$SMOKE" >/dev/null 2>&1; then
    echo "setup_eval_env: $VENV is up to date"
    exit 0
fi

if [ "$force" = 1 ] && [ -d "$VENV" ]; then
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_eval_env: creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
# Keep the venv out of git without touching the repository's .gitignore.
echo '*' > "$VENV/.gitignore"

echo "setup_eval_env: installing the locked requirements (no dependency resolution, see $REQ)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$REQ"
"$VENV/bin/python" -c "$SMOKE"
echo "$want" > "$STAMP"
echo "setup_eval_env: ready: $VENV/bin/python -m faceanon.evaluate --help"
