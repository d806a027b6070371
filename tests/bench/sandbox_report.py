#!/usr/bin/env python3
"""Runs each hostile handler case and hostile request alone through a
widget-host binary, and prints what became of the request, the host's peak
memory (the kernel's high-water mark of its resident set, VmHWM, read until
it exits) and how many bytes it logged (log file and stderr).

    tests/bench/sandbox_report.py BINARY [BINARY...]

Run it with the current build and an older one side by side to compare.
The test handlers come from target/guests (built by `cargo build`) and
tests/guests/bombs/bombs.wat.
"""
import os
import subprocess
import sys
import tempfile

from measure import wait_measured

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTILE = os.path.join(ROOT, "target/guests/wasm32-wasip2/guest/hostile_guest.wasm")
BOMBS = os.path.join(ROOT, "tests/guests/bombs/bombs.wat")

# (name, handler, request body or a size for a sparse file of blanks)
CASES = [
    ("infinite loop", HOSTILE, b"loop"),
    ("unbounded recursion", HOSTILE, b"recurse"),
    ("trap", HOSTILE, b"trap"),
    ("single-memory bomb", HOSTILE, b"bomb"),
    ("table bomb", BOMBS, b"t"),
    ("many-memories bomb", BOMBS, b"m"),
    ("log flood (1 MiB lines)", HOSTILE, b"log-flood"),
    ("plan of 1,000,000 operations", HOSTILE, b"many-ops"),
    ("plan with one 100 MB document", HOSTILE, b"big-doc"),
    ("ordering-key traps", HOSTILE, b"key-trap"),
    ("ordering-key loops", HOSTILE, b"key-loop"),
    ("WASI file, env, network", HOSTILE, b"wasi 127.0.0.1:9"),
    ("1 GiB request (builtin handler)", "builtin", 1 << 30),
]


def run_case(binary, handler, body):
    with tempfile.TemporaryDirectory() as scratch:
        requests = os.path.join(scratch, "requests")
        os.mkdir(requests)
        path = os.path.join(requests, "1")
        with open(path, "wb") as f:
            if isinstance(body, int):
                f.truncate(body)
            else:
                f.write(body)
        log = os.path.join(scratch, "host.log")
        stderr = os.path.join(scratch, "stderr")
        with open(stderr, "wb") as err, open(os.devnull, "wb") as out:
            child = subprocess.Popen(
                [binary, "run", "--until-empty", "--handler", handler,
                 "--requests-dir", requests, "--widgets-dir", os.path.join(scratch, "widgets"),
                 "--log-file", log],
                stdout=out, stderr=err, env={**os.environ, "RUST_LOG": "info"})
            status, peak_kib, _ = wait_measured(child, every=0.002)
        logged = os.path.getsize(log) + os.path.getsize(stderr) if os.path.exists(log) else 0
        reason_file = os.path.join(requests, "dead-letter", "1.reason")
        if os.path.exists(reason_file):
            with open(reason_file) as f:
                outcome = "dead-lettered: " + f.read().strip().split("; handler stderr")[0][:90]
        elif os.path.exists(path):
            outcome = "left in source"
        else:
            outcome = "applied"
        if status != 0:
            outcome = f"host exited {status}; " + outcome
        return outcome, peak_kib // 1024, logged


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    for binary in binaries:
        print(f"## {binary}\n")
        print("| case | outcome | peak RSS | log |")
        print("|---|---|---|---|")
        for name, handler, body in CASES:
            outcome, rss_mb, logged = run_case(binary, handler, body)
            print(f"| {name} | {outcome.replace('|', '/')} | {rss_mb} MB | {logged:,} B |", flush=True)
        print()


if __name__ == "__main__":
    main()
