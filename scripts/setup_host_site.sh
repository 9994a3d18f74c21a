#!/usr/bin/env bash
# A further host (not the first, whose requirements are in .venv): install the packages whose pinned versions differ
# between ComfyUI releases (its frontend, templates and embedded docs) into `<host>/../site`, which scripts/test.sh
# puts first on PYTHONPATH for that host's run. Everything else comes from .venv. Idempotent.
#
#   scripts/setup_host_site.sh .hosts/comfyui-0.3.64/ComfyUI
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="$(cd "$1" && pwd)"
SITE="$(dirname "$HOST")/site"
VENV="${FACEANON_VENV:-$ROOT/.venv}"
PINS="$(grep -E '^comfyui-[a-z-]+==' "$HOST/requirements.txt" || true)"
if [ -z "$PINS" ]; then
    exit 0
fi
if [ -f "$SITE/.pins" ] && [ "$(cat "$SITE/.pins")" = "$PINS" ]; then
    exit 0
fi
echo "setup_host_site: installing $(echo $PINS) for $HOST into $SITE"
rm -rf "$SITE"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --progress-bar off --disable-pip-version-check -q --no-deps --target "$SITE" $PINS
echo "$PINS" > "$SITE/.pins"
