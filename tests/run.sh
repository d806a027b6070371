#!/usr/bin/env bash
# Runs every test: the default handler's unit tests (native), the host's
# unit tests, and the black-box tests that run the built binary against
# real protocol servers (tests/servers.sh starts them):
#   - moto in server mode (S3 and DynamoDB), from PyPI,
#   - Amazon's DynamoDB Local, shipped inside the npm package
#     amplify-dynamodb-simulator.
# and builds the example handlers in Python and JavaScript
# (guest/build-handlers.sh), which the tests check.
# Installs what a fresh machine lacks first. Extra arguments go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
servers="$root/target/test-servers"
mkdir -p "$servers"

log() { printf '[tests/run.sh] %s\n' "$*" >&2; }

# --- What the tests need: the wasm target, moto, Java, DynamoDB Local.
tests/install.sh

# --- The example handlers in Python and JavaScript, checked by the tests.
guest/build-handlers.sh
export WIDGET_HOST_TEST_HANDLERS="$PWD/target/handlers"

output="$servers/cargo-test.log"
set +e
tests/servers.sh cargo test --workspace --locked "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over cargo's test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$output"
exit "$status"
