#!/usr/bin/env bash
# Builds the example handlers in other languages into target/handlers/:
#   widget_handler_py.wasm  (guest/python, componentize-py from PyPI)
#   widget_handler_js.wasm  (guest/javascript, componentize-js from npm)
# Installs their toolchains first if missing. Both work offline once installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/guest/python/build.sh" "$root/target/handlers/widget_handler_py.wasm"
(cd "$root/guest/javascript" && { [ -d node_modules/@bytecodealliance/componentize-js ] || npm ci --no-audit --no-fund --silent; } \
  && node build.mjs "$root/target/handlers/widget_handler_js.wasm")
