#!/usr/bin/env bash
# Runs every test: the default handler's unit tests (native), the host's
# unit tests, and the black-box tests that run the built binary, against
# real protocol servers started here on free loopback ports:
#   - moto in server mode (S3 and DynamoDB),
#   - Amazon's DynamoDB Local (shipped inside the npm package
#     amplify-dynamodb-simulator).
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # URL NAME LOGFILE
  for _ in $(seq 1 150); do
    if python3 -c "import urllib.request,sys
try: urllib.request.urlopen('$1', timeout=1)
except urllib.error.HTTPError: pass
except Exception: sys.exit(1)" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  log "$2 did not start; its log:"; cat "$3" >&2; return 1
}

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

moto_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$servers/moto.log" 2>&1 &
pids+=($!)
ddb_port=$(free_port)
(cd "$ddb_dir/package/emulator" && exec java -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar \
  -inMemory -port "$ddb_port") >"$servers/dynamodb-local.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$moto_port/" moto "$servers/moto.log"
wait_for "http://127.0.0.1:$ddb_port/" "DynamoDB Local" "$servers/dynamodb-local.log"
log "moto on port $moto_port, DynamoDB Local on port $ddb_port"

export WIDGET_HOST_TEST_MOTO="http://127.0.0.1:$moto_port"
export WIDGET_HOST_TEST_DYNAMODB_LOCAL="http://127.0.0.1:$ddb_port"
# Local servers take any credentials; none of the machine's own are used.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_DYNAMODB

cargo test --workspace --locked "$@"
