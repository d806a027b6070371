#!/usr/bin/env bash
# The suite on a loaded machine, as issue #32 asked it to hold: RUNS times
# (default 3) in a row, each on a fresh clone of HEAD run as CI runs it
# (`CI=true bash .ci/run`), with every core kept busy by a spinning process
# beside it. Prints one line per run: exit status, seconds, tests passed.
#   tests/loaded.sh [RUNS]
# CARGO_TARGET_DIR, if set, is shared by the runs (a prebuilt folder saves
# the dependencies' build; the workspace's own crates are built anew).
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
commit=$(git rev-parse HEAD)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
for n in $(seq 1 "$runs"); do
  git clone -q "$PWD" "$work/clone$n" && git -C "$work/clone$n" checkout -q "$commit"
  spinners=()
  for _ in $(seq 1 "$(nproc)"); do
    ( while :; do :; done ) &
    spinners+=($!)
  done
  start=$(date +%s)
  ( cd "$work/clone$n" && CI=true bash .ci/run ) > "$work/run$n.log" 2>&1
  status=$?
  kill "${spinners[@]}"
  passed=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$work/run$n.log" | tail -1)
  echo "run $n at $commit: exit $status, $(( $(date +%s) - start )) s, ${passed:-no test summary}"
  if [ "$status" -ne 0 ]; then
    cp "$work/run$n.log" "loaded-run$n.log"
    echo "its log: loaded-run$n.log"
  fi
done
