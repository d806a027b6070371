#!/usr/bin/env bash
# Runs every test: the default handler's unit tests (native), the host's
# unit tests, and the black-box tests that run the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# rust-toolchain.toml names the toolchain and the wasm32-wasip2 target;
# this installs them if the machine lacks them.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add wasm32-wasip2 >/dev/null

cargo test --workspace --locked "$@"
