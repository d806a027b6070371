#!/usr/bin/env bash
# Builds the handler into handler.wasm with componentize-py (installed from
# PyPI if missing), with no WASI imports (--stub-wasi).
#   ./build.sh [OUT.wasm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/handler.wasm}"
COMPONENTIZE_PY_VERSION=0.25.1
if ! command -v componentize-py >/dev/null 2>&1 || [ "$(componentize-py --version | cut -d' ' -f2)" != "$COMPONENTIZE_PY_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
cd "$here"
componentize-py -d "$here/wit" -w widget-handler componentize handler --stub-wasi -o "$out"
echo "wrote $out"
