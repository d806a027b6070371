#!/usr/bin/env python3
"""A huge bucket backlog, simulated: starts tests/bench/s3_backlog_server.py
with N generated requests, runs widget-host on it (into a local folder) for
SECONDS, and reports as tests/bench/backlog.py does for a folder: peak RSS
(VmHWM, polled), requests finished, the time to the first one and the
longest pause between two.

    tests/bench/bucket_backlog.py BINARY N SECONDS
"""
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from measure import wait_measured

binary, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
here = os.path.dirname(os.path.abspath(__file__))
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, os.path.join(here, "s3_backlog_server.py"), str(port), str(n)])
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.1)
scratch = tempfile.mkdtemp(prefix="bucket-backlog-")
log = os.path.join(scratch, "host.log")
env = dict(os.environ, RUST_LOG="info,widget_host::requests=debug", AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}",
           AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
try:
    child = subprocess.Popen([binary, "run", "--max-runtime", str(seconds * 1000), "--request-bucket", "backlog",
                              "--widgets-dir", os.path.join(scratch, "widgets"), "--log-format", "json",
                              "--log-file", log], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=env)
    _, peak, _ = wait_measured(child, every=0.05)
    summary = child.stdout.read().splitlines()[0]
    stamp = lambda l: datetime.datetime.fromisoformat(json.loads(l)["timestamp"].replace("Z", "+00:00"))
    times = [stamp(l) for l in open(log) if '"Request done."' in l]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    first = (times[0] - stamp(open(log).readline())).total_seconds() if times else None
    print(json.dumps({"backlog": n, "seconds": seconds, "summary": summary, "peak_rss_mb": peak // 1024,
                      "first_request_after_s": round(first, 2) if first is not None else None,
                      "longest_pause_s": round(max(gaps), 3) if gaps else None}))
finally:
    server.terminate()
    shutil.rmtree(scratch, ignore_errors=True)
