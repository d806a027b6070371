#!/usr/bin/env bash
# The benchmark, side by side in one run: widget-host, the floor and the
# seed-style consumer, on the same generated requests, for folder -> folder,
# S3 -> S3 and S3 -> DynamoDB (bench/bench.py says how), then the table and
# the chart (bench/report.py -> bench/results.svg).
#   bench/run.sh [N] [SEED_SECONDS]     (N = 10000 requests by default)
# Garage 2.5 (the S3 server) is built once into target/bench-tools/ when
# missing: 8 to 20 minutes on 2 cores, never as part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[bench/run.sh] %s\n' "$*" >&2; }

tests/install.sh
python3 -c "import boto3" 2>/dev/null || python3 -m pip install --quiet boto3
# Only the parts that store in S3 need Garage (bench/bench.py says which).
needs_s3=true
case ",${BENCH_ONLY:-s3}," in *,s3,*|*,sweep,*|*,delay,*) ;; *) needs_s3=false ;; esac
if $needs_s3 && [ ! -x target/bench-tools/bin/garage ]; then
  log "building Garage 2.5.0 (once)"
  cargo install --locked --root target/bench-tools --target-dir target/bench-build garage --version 2.5.0
fi
cargo build --release --locked -p widget-host -p widget-bench-floor
tests/servers.sh python3 bench/bench.py "${1:-10000}" "${2:-30}"
python3 bench/report.py
