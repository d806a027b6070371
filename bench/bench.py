#!/usr/bin/env python3
"""The side-by-side benchmark; bench/run.sh installs what it needs and runs
it inside tests/servers.sh (which starts DynamoDB Local and exports
WIDGET_HOST_TEST_DYNAMODB_LOCAL). This script starts a single-node Garage
(S3) itself.

    bench.py N [SEED_SECONDS]

For each backend (folder -> folder, S3 -> S3, S3 -> DynamoDB, SQS ->
DynamoDB) it produces
the same N requests (`widget-host produce --seed 7 --start-ms ...`: mixed
creates, updates and deletes) into a fresh place for each contender, runs
the contender until the source is empty, and records requests/s, calls per
request, p50/p99 latency (from a request's listing to its removal) and
peak RSS (the process's VmHWM, polled). Contenders:

- widget-host with its defaults (target/release/widget-host);
- the floor (target/release/widget-bench-floor: fewest calls, batched, no
  Wasm, no logic), at the same concurrency;
- the seed-style consumer (bench/seed_consumer.py: Python, boto3, one at a
  time) at a 400 backlog, and at the full backlog for SEED_SECONDS (30).

SQS -> DynamoDB (a FIFO queue on fauxqs, which tests/servers.sh starts)
runs one widget-host and then three on one queue, side by side.

Then a concurrency sweep (widget-host and the floor, S3 -> DynamoDB,
concurrency 1 to 32), and the same backends where every call takes 20 ms
(a delaying proxy, target/release/widget-bench-delay, in front of each
server; DELAY_N requests, 2,000 by default): widget-host with its
defaults (the number of requests at once measured), widget-host at a fixed
16 (the default before it was measured) and the floor at 64, for S3 -> S3
and S3 -> DynamoDB; and SQS -> DynamoDB with its defaults beside fixed 16,
64 and 128 (queue-delay), so that the measured number is judged against
the best fixed one. Every row records the CPU time per request, and
widget-host's rows the handler instances per request (from its summary).
Results go to target/bench/results.jsonl; bench/report.py turns them into
the table and the chart. BENCH_ONLY=a,b runs only those parts (folder, s3,
sqs, sweep, delay, queue-delay, traces); Garage is started only for a part
that needs S3. The traces part (not in the default set) runs folder ->
folder with traces off, on (to the OTLP receiver tests/servers.sh starts)
and, with BENCH_BEFORE_HOST=BINARY, a build from before traces, in
TRACES_ROUNDS (3) alternating rounds.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "bench"))
from measure import wait_measured  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, "target/release/widget-host")
FLOOR = os.path.join(ROOT, "target/release/widget-bench-floor")
DELAY = os.path.join(ROOT, "target/release/widget-bench-delay")
DELAY_MS = 20
GARAGE = os.path.join(ROOT, "target/bench-tools/bin/garage")
OUT = os.path.join(ROOT, "target/bench")
SEED, START_MS = 7, 1_700_000_000_000
CPU = []


def log(*words):
    print("[bench]", *words, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measured(command, env):
    """Runs `command` to its end: (stdout, seconds, peak RSS in MB); its CPU
    time goes to the last CPU list."""
    started = time.monotonic()
    errors = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    _, peak, cpu = wait_measured(child)
    CPU.append(cpu)
    out = child.stdout.read()
    if child.returncode != 0:
        errors.seek(0)
        raise SystemExit(f"{command[0]} failed ({child.returncode}): {out}{errors.read()[-3000:]}")
    return out, time.monotonic() - started, peak // 1024


class Garage:
    """A single-node Garage in a scratch folder, with one key."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="garage-")
        self.s3_port, rpc = free_port(), free_port()
        self.config = os.path.join(self.dir, "garage.toml")
        with open(self.config, "w") as f:
            f.write(f"""metadata_dir = "{self.dir}/meta"
data_dir = "{self.dir}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{uuid.uuid4().hex}{uuid.uuid4().hex}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{self.s3_port}"
""")
        self.server = subprocess.Popen([GARAGE, "-c", self.config, "server"],
                                       stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "w"))
        for _ in range(100):
            try:
                node = self.cli("node", "id", "-q").split("@")[0]
                break
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        self.cli("layout", "assign", "-z", "dc1", "-c", "10G", node)
        self.cli("layout", "apply", "--version", "1")
        key = self.cli("key", "create", "bench")
        self.key_id = next(l.split(":")[1].strip() for l in key.splitlines() if "Key ID" in l)
        self.secret = next(l.split(":")[1].strip() for l in key.splitlines() if "Secret key" in l)
        self.cli("key", "allow", "--create-bucket", self.key_id)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        log("Garage on", self.endpoint)

    def cli(self, *args):
        return subprocess.run([GARAGE, "-c", self.config, *args], check=True, capture_output=True, text=True).stdout

    def stop(self):
        self.server.terminate()
        self.server.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seed_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    os.makedirs(OUT, exist_ok=True)
    results = open(os.path.join(OUT, "results.jsonl"), "w")
    only = set(filter(None, os.environ.get("BENCH_ONLY", "folder,s3,sqs,sweep,delay,queue-delay").split(",")))
    # Garage only where a part stores in S3; the others get a stand-in key
    # (DynamoDB Local and fauxqs take any).
    garage = Garage() if only & {"s3", "sweep", "delay"} else None
    key_id, secret = (garage.key_id, garage.secret) if garage else ("bench", "bench")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
               AWS_REGION="garage", AWS_DEFAULT_REGION="garage",
               AWS_ENDPOINT_URL_DYNAMODB=os.environ["WIDGET_HOST_TEST_DYNAMODB_LOCAL"],
               AWS_ENDPOINT_URL_SQS=os.environ["WIDGET_HOST_TEST_FAUXQS"],
               # The log file gets each request's line (with its latency); stderr is not kept.
               RUST_LOG="info,widget_host::requests=debug")
    if garage:
        env["AWS_ENDPOINT_URL_S3"] = garage.endpoint
    import boto3
    s3 = garage and boto3.client("s3", endpoint_url=garage.endpoint, region_name="garage",
                                 aws_access_key_id=key_id, aws_secret_access_key=secret)
    # DynamoDB Local keeps tables per access key and region: the same as the contenders'.
    ddb = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL_DYNAMODB"], region_name="garage",
                       aws_access_key_id=key_id, aws_secret_access_key=secret)

    sqs = boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL_SQS"], region_name="garage",
                       aws_access_key_id=key_id, aws_secret_access_key=secret)

    def queue():
        name = f"q{uuid.uuid4().hex[:12]}.fifo"
        return sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]

    def bucket():
        name = f"b{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)
        return name

    def table():
        name = f"t{uuid.uuid4().hex[:12]}"
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        return name

    def produce(place, count):
        subprocess.run([HOST, "produce", *place, "-mwr", str(count), "--seed", str(SEED), "--start-ms", str(START_MS)],
                       env=env, check=True, capture_output=True)

    def record(backend, contender, backlog, concurrency, out, seconds, rss, requests=None, calls=None, p50=None, p99=None,
               instances=None):
        row = dict(backend=backend, contender=contender, backlog=backlog, concurrency=concurrency,
                   instances_per_request=round(instances / requests, 4) if instances is not None and requests else None,
                   requests=requests, seconds=round(seconds, 3), rate=round(requests / seconds, 1),
                   calls_per_request=round(calls / requests, 3) if calls is not None else None,
                   p50_ms=p50, p99_ms=p99, peak_rss_mb=rss,
                   # Cores the contender kept busy on average (the machine has os.cpu_count()).
                   cpu_cores=round(CPU[-1] / seconds, 2),
                   cpu_ms_per_request=round(CPU[-1] * 1000 / requests, 3) if requests else None)
        log(json.dumps(row))
        results.write(json.dumps(row) + "\n")
        results.flush()

    def fixed(concurrency):
        """The flag for a fixed number of requests at once; none measures it."""
        return [] if concurrency is None else ["--concurrency", str(concurrency)]

    def run_host(backend, source, sink, count, concurrency=None, env=env, contender="widget-host", host=HOST, extra=()):
        logfile = tempfile.mktemp(suffix=".log")
        out, seconds, rss = measured([host, "run", "--until-empty", *fixed(concurrency), *extra,
                                      "--log-format", "json", "--log-file", logfile, *source, *sink], env)
        latencies = sorted(json.loads(l).get("latency_ms", 0) for l in open(logfile)
                           if '"Request done."' in l or '"Request dead-lettered."' in l)
        os.unlink(logfile)
        calls, instances = summed(out, "AWS calls:"), summed(out, "instances:")
        q = lambda p: latencies[round((len(latencies) - 1) * p)] if latencies else 0
        record(backend, contender, count, concurrency or "measured", out, seconds, rss, len(latencies), calls,
               q(0.5), q(0.99), instances)

    def run_hosts(backend, hosts, source, sink, count, concurrency=None, env=env, contender=None):
        """`hosts` widget-hosts on one source at once, measured together:
        wall time to the last one's end, calls and CPU summed, the largest
        peak RSS."""
        import threading
        logs = [tempfile.mktemp(suffix=".log") for _ in range(hosts)]
        started = time.monotonic()
        children = [subprocess.Popen([HOST, "run", "--until-empty", *fixed(concurrency),
                                      "--log-format", "json", "--log-file", log_file, *source, *sink],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    for log_file in logs]
        measured_children = [None] * hosts

        def wait(i):
            measured_children[i] = wait_measured(children[i])
        threads = [threading.Thread(target=wait, args=(i,)) for i in range(hosts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        CPU.append(sum(cpu for _, _, cpu in measured_children))
        calls, instances = 0, 0
        for child, (code, _, _) in zip(children, measured_children):
            out = child.stdout.read()
            if code != 0:
                raise SystemExit(f"widget-host failed ({code}): {out}")
            calls += summed(out, "AWS calls:") or 0
            instances += summed(out, "instances:") or 0
        latencies = sorted(json.loads(l).get("latency_ms", 0) for f in logs for l in open(f)
                           if '"Request done."' in l or '"Request dead-lettered."' in l)
        for f in logs:
            os.unlink(f)
        q = lambda p: latencies[round((len(latencies) - 1) * p)] if latencies else 0
        contender = contender or ("widget-host" if hosts == 1 else f"widget-host x{hosts}")
        record(backend, contender, count, concurrency or "measured", "", seconds,
               max(p for _, p, _ in measured_children) // 1024,
               len(latencies), calls, q(0.5), q(0.99), instances)

    def run_floor(backend, args, count, concurrency=16, env=env):
        out, seconds, rss = measured([FLOOR, "--concurrency", str(concurrency), *args], env)
        r = json.loads(out.strip().splitlines()[-1])
        calls = r["calls"] if backend != "folder" else None
        record(backend, "floor", count, concurrency, out, seconds, rss, r["requests"], calls,
               round(r["p50_ms"]), round(r["p99_ms"]))

    def run_seed(backend, requests, kind, dest, count, limit):
        out, seconds, rss = measured([sys.executable, os.path.join(ROOT, "bench/seed_consumer.py"),
                                      requests, kind, dest, str(limit)], env)
        r = json.loads(out.strip().splitlines()[-1])
        record(backend, "seed-style", count, 1, out, r["seconds"], rss, r["requests"], r["calls"],
               round(r["p50_ms"]), round(r["p99_ms"]))

    scratch = tempfile.mkdtemp(prefix="bench-")
    try:
        # folder -> folder
        for contender in ["widget-host", "floor"] if "folder" in only else []:
            src, dst = os.path.join(scratch, f"{contender}-r"), os.path.join(scratch, f"{contender}-w")
            produce(["--requests-dir", src], n)
            if contender == "widget-host":
                run_host("folder", ["--requests-dir", src], ["--widgets-dir", dst], n)
            else:
                run_floor("folder", ["--requests-dir", src, "--widgets-dir", dst], n)
        # The cost of traces: folder -> folder (where the host's own CPU is
        # most of a request's) with traces off, with traces exported to the
        # OTLP receiver tests/servers.sh starts, and, given BENCH_BEFORE_HOST,
        # a build from before traces existed; rounds alternate.
        before = os.environ.get("BENCH_BEFORE_HOST")
        traced = ["--otlp-endpoint", os.environ["WIDGET_HOST_TEST_OTLP"]]
        contenders = [("widget-host, traces off", HOST, []), ("widget-host, traces on", HOST, traced)]
        if before:
            contenders.append(("before traces", before, []))
        for round_ in range(int(os.environ.get("TRACES_ROUNDS", "3"))) if "traces" in only else []:
            for contender, binary, extra in contenders[round_ % len(contenders):] + contenders[:round_ % len(contenders)]:
                src, dst = (os.path.join(scratch, f"traces-{round_}-{binary == HOST}-{bool(extra)}-{side}")
                            for side in "rw")
                produce(["--requests-dir", src], n)
                run_host("folder (traces)", ["--requests-dir", src], ["--widgets-dir", dst], n,
                         env=dict(env, OTEL_SERVICE_NAME="bench"), contender=contender, host=binary, extra=extra)
        # S3 -> S3 and S3 -> DynamoDB
        for backend in ["s3-s3", "s3-dynamodb"] if "s3" in only else []:
            dest = (lambda: ["--widget-bucket", bucket()]) if backend == "s3-s3" else (lambda: ["--dynamodb-widget-table", table()])
            requests = bucket()
            produce(["-rb", requests], n)
            run_host(backend, ["--request-bucket", requests], dest(), n)
            requests = bucket()
            produce(["-rb", requests], n)
            d = dest()
            run_floor(backend, ["--requests-bucket", requests,
                                "--widget-bucket" if backend == "s3-s3" else "--table", d[1]], n)
            for backlog, limit in [(400, float("inf")), (n, seed_seconds)]:
                requests = bucket()
                produce(["-rb", requests], backlog)
                d = dest()
                run_seed(backend, requests, "s3" if backend == "s3-s3" else "dynamodb", d[1], backlog, limit)
        # SQS -> DynamoDB: one host, then three on one queue.
        for hosts in [1, 3] if "sqs" in only else []:
            url = queue()
            produce(["-rq", url], n)
            run_hosts("sqs-dynamodb", hosts, ["--request-queue", url, "--queue-wait-seconds", "1"],
                      ["--dynamodb-widget-table", table()], n)
        # Concurrency sweep, S3 -> DynamoDB.
        sweep_n = max(n // 5, 1000)
        for concurrency in [1, 2, 4, 8, 16, 32] if "sweep" in only else []:
            requests = bucket()
            produce(["-rb", requests], sweep_n)
            run_host("sweep-s3-dynamodb", ["--request-bucket", requests], ["--dynamodb-widget-table", table()],
                     sweep_n, concurrency)
            requests = bucket()
            produce(["-rb", requests], sweep_n)
            run_floor("sweep-s3-dynamodb", ["--requests-bucket", requests, "--table", table()], sweep_n, concurrency)
        # Where every call takes 20 ms: a delaying proxy before each server.
        delay_n = int(os.environ.get("DELAY_N", "2000"))
        if "delay" in only:
            proxies = [subprocess.Popen([DELAY, upstream, str(DELAY_MS)], stdout=subprocess.PIPE, text=True)
                       for upstream in [garage.endpoint, env["AWS_ENDPOINT_URL_DYNAMODB"]]]
            try:
                s3_url, ddb_url = (p.stdout.readline().strip() for p in proxies)
                far = dict(env, AWS_ENDPOINT_URL_S3=s3_url, AWS_ENDPOINT_URL_DYNAMODB=ddb_url)
                for backend in ["s3-s3", "s3-dynamodb"]:
                    dest = (lambda: ["--widget-bucket", bucket()]) if backend == "s3-s3" else (lambda: ["--dynamodb-widget-table", table()])
                    name = f"{backend} @{DELAY_MS}ms"
                    for concurrency, contender in [(None, "widget-host"), (16, "widget-host at 16")]:
                        requests = bucket()
                        produce(["-rb", requests], delay_n)
                        run_host(name, ["--request-bucket", requests], dest(), delay_n, concurrency, far, contender)
                    requests = bucket()
                    produce(["-rb", requests], delay_n)
                    run_floor(name, ["--requests-bucket", requests,
                                     "--widget-bucket" if backend == "s3-s3" else "--table", dest()[1]], delay_n, 64, far)
            finally:
                for proxy in proxies:
                    proxy.kill()
                    proxy.wait()
        # SQS -> DynamoDB where every call takes 20 ms: the measured number
        # beside fixed ones, the best of which it should come near.
        if "queue-delay" in only:
            proxies = [subprocess.Popen([DELAY, upstream, str(DELAY_MS)], stdout=subprocess.PIPE, text=True)
                       for upstream in [env["AWS_ENDPOINT_URL_DYNAMODB"], env["AWS_ENDPOINT_URL_SQS"]]]
            try:
                ddb_url, sqs_url = (p.stdout.readline().strip() for p in proxies)
                far = dict(env, AWS_ENDPOINT_URL_DYNAMODB=ddb_url, AWS_ENDPOINT_URL_SQS=sqs_url)
                for concurrency in [None, 16, 64, 128]:
                    url = queue()
                    produce(["-rq", url], delay_n)
                    contender = "widget-host" if concurrency is None else f"widget-host at {concurrency}"
                    run_hosts(f"sqs-dynamodb @{DELAY_MS}ms", 1, ["--request-queue", url, "--queue-wait-seconds", "1"],
                              ["--dynamodb-widget-table", table()], delay_n, concurrency, far, contender)
            finally:
                for proxy in proxies:
                    proxy.kill()
                    proxy.wait()
    finally:
        if garage:
            garage.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    machine = dict(cores=os.cpu_count(), garage=garage_version() if garage else "no Garage", n=n)
    with open(os.path.join(OUT, "machine.json"), "w") as f:
        json.dump(machine, f)


def summed(summary, label):
    """The number after `label` in widget-host's summary (`AWS calls: 12`),
    or None where the summary has no such line."""
    for line in summary.splitlines():
        if label in line:
            return int(line.split(label)[1].split()[0])
    return None


def garage_version():
    try:
        return subprocess.run([GARAGE, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
