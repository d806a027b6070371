#!/usr/bin/env bash
# Builds the Python widget handler into a component with componentize-py
# (from PyPI), with no WASI imports (--stub-wasi).
#   guest/python/build.sh [OUT.wasm]   (default: target/handlers/widget_handler_py.wasm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/handlers/widget_handler_py.wasm}"
COMPONENTIZE_PY_VERSION=0.25.1
if ! command -v componentize-py >/dev/null 2>&1 || [ "$(componentize-py --version | cut -d' ' -f2)" != "$COMPONENTIZE_PY_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
mkdir -p "$(dirname "$out")"
cd "$here"
componentize-py -d "$root/wit" -w widget-handler componentize handler --stub-wasi -o "$out"
