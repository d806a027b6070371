#!/usr/bin/env bash
# Builds the handler into handler.wasm with componentize-py, with no WASI
# imports (--stub-wasi). componentize-py comes from PyPI into a virtual
# environment of its own, made once and shared by every handler project
# (COMPONENTIZE_PY_VENV names another): your own Python is left as it is.
#   ./build.sh [OUT.wasm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/handler.wasm}"
COMPONENTIZE_PY_VERSION=0.25.1
venv="${COMPONENTIZE_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/widget-host/componentize-py-$COMPONENTIZE_PY_VERSION}"
# Builds side by side (two projects, a test suite) make it once: a lock.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/componentize-py" ]; then
  echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv (once)" >&2
  python3 -m venv "$venv" || { echo "python3 -m venv failed: install your Python's venv module (Debian: apt install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
flock -u 9
cd "$here"
"$venv/bin/componentize-py" -d "$here/wit" -w widget-handler componentize handler --stub-wasi -o "$out"
echo "wrote $out"
