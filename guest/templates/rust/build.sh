#!/usr/bin/env bash
# Builds the handler into handler.wasm (a WebAssembly component), adding the
# wasm32-wasip2 target to the toolchain first if it is missing.
#   ./build.sh [OUT.wasm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/handler.wasm}"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --manifest-path "$here/Cargo.toml" --release --target wasm32-wasip2
cp "$here/target/wasm32-wasip2/release/{{crate}}.wasm" "$out"
echo "wrote $out"
