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

# --- Rust: rust-toolchain.toml names the toolchain and the wasm target.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add wasm32-wasip2 >/dev/null 2>&1

# --- moto, from PyPI.
MOTO_VERSION=5.2.1
if ! python3 -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  log "installing moto[server]==$MOTO_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# --- Java for DynamoDB Local.
if ! command -v java >/dev/null 2>&1; then
  log "installing a Java runtime"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
fi

# --- DynamoDB Local, from the npm registry.
DDB_PACKAGE=amplify-dynamodb-simulator@2.9.30
ddb_dir="$servers/dynamodb-local"
if [ ! -f "$ddb_dir/package/emulator/DynamoDBLocal.jar" ]; then
  log "fetching DynamoDB Local ($DDB_PACKAGE)"
  rm -rf "$ddb_dir" && mkdir -p "$ddb_dir"
  (cd "$ddb_dir" && npm pack --silent "$DDB_PACKAGE" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
fi

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
