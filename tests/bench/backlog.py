#!/usr/bin/env python3
"""A huge folder backlog: writes N small create requests into a fresh
folder (plain writes, no fsync: this is the setup, not the test), runs
widget-host on it for SECONDS, and reports the host's peak RSS (VmHWM,
polled), how many requests it finished, and the longest pause between two
finished requests (from the JSON log's timestamps).

    tests/bench/backlog.py BINARY N SECONDS
"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from measure import wait_measured

binary, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
scratch = tempfile.mkdtemp(prefix="backlog-")
requests = os.path.join(scratch, "requests")
os.mkdir(requests)
started = time.monotonic()
for i in range(n):
    with open(os.path.join(requests, f"{1_700_000_000_000 + i:013d}"), "w") as f:
        f.write(f'{{"type":"create","requestId":"r{i}","widgetId":"w{i % 50000}","owner":"Sue Smith","label":"L{i}"}}')
print(f"wrote {n} requests in {time.monotonic() - started:.0f} s", file=sys.stderr)
log = os.path.join(scratch, "host.log")
child = subprocess.Popen([binary, "run", "--max-runtime", str(seconds * 1000), "--requests-dir", requests,
                          "--widgets-dir", os.path.join(scratch, "widgets"), "--log-format", "json",
                          "--log-file", log], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, RUST_LOG="info,widget_host::requests=debug"))
_, peak, _ = wait_measured(child, every=0.05)
summary = child.stdout.read().splitlines()[0]
times = [datetime.datetime.fromisoformat(json.loads(l)["timestamp"].replace("Z", "+00:00"))
         for l in open(log) if '"Request done."' in l]
gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
first = (times[0] - datetime.datetime.fromisoformat(
    json.loads(open(log).readline())["timestamp"].replace("Z", "+00:00"))).total_seconds() if times else None
print(json.dumps({"backlog": n, "seconds": seconds, "summary": summary, "peak_rss_mb": peak // 1024,
                  "first_request_after_s": round(first, 2) if first is not None else None,
                  "longest_pause_s": round(max(gaps), 3) if gaps else None}))
shutil.rmtree(scratch, ignore_errors=True)
