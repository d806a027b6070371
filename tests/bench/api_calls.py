#!/usr/bin/env python3
"""Counts the AWS API calls widget-host makes per request, by request type,
for S3 -> S3 and S3 -> DynamoDB, against the local servers tests/servers.sh
starts (it sets WIDGET_HOST_TEST_MOTO and WIDGET_HOST_TEST_DYNAMODB_LOCAL):

    tests/servers.sh tests/bench/api_calls.py [N]

Writes N creates, runs the host until empty, then N updates of those
widgets, then N deletes, and reads the host's own count of HTTP requests
(the summary's `AWS calls:` line, counted by an SDK interceptor). Prints
the calls per request next to the course's sequential consumer, which
made one LIST, one GET and one DELETE per request plus its store calls.
"""
import json, os, re, subprocess, sys, uuid
import boto3

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = os.path.join(ROOT, "target", "release", "widget-host")
MOTO = os.environ["WIDGET_HOST_TEST_MOTO"]
DDB = os.environ["WIDGET_HOST_TEST_DYNAMODB_LOCAL"]
creds = dict(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
s3 = boto3.client("s3", endpoint_url=MOTO, **creds)
ddb = boto3.client("dynamodb", endpoint_url=DDB, **creds)


def run(requests_bucket, dest_flag, dest_name):
    env = dict(os.environ, AWS_ENDPOINT_URL_S3=MOTO, AWS_ENDPOINT_URL_DYNAMODB=DDB)
    out = subprocess.run([HOST, "--requests_bucket", requests_bucket, "--destination_flag", dest_flag,
                          "--destination_name", dest_name, "--until-empty"],
                         env=env, capture_output=True, text=True, check=True).stdout
    line = re.search(r"AWS calls:\s+(\d+) \((.*)\)", out)
    calls = dict((op, int(n)) for op, n in (p.rsplit(" ", 1) for p in line.group(2).split(", ")))
    return int(line.group(1)), calls


def body(kind, wid):
    r = {"type": kind, "requestId": str(uuid.uuid4()), "widgetId": wid, "owner": "Mary Matthews"}
    if kind != "delete":
        r["label"] = "L" + kind
        r["otherAttributes"] = [{"name": "color", "value": "red"}, {"name": "size", "value": "9"}]
    return json.dumps(r)


def measure(dest_flag):
    tag = uuid.uuid4().hex[:8]
    requests = f"requests-{tag}"
    s3.create_bucket(Bucket=requests)
    if dest_flag == "wb":
        dest = f"widgets-{tag}"
        s3.create_bucket(Bucket=dest)
    else:
        dest = f"widgets-{tag}"
        ddb.create_table(TableName=dest, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    ids = [str(uuid.uuid4()) for _ in range(N)]
    rows = []
    for phase, kind in enumerate(["create", "update", "delete"]):
        for i, wid in enumerate(ids):
            s3.put_object(Bucket=requests, Key=f"{1700000000000 + phase * 10**6 + i:013d}", Body=body(kind, wid))
        total, calls = run(requests, dest_flag, dest)
        rows.append((kind, total / N, calls))
    return rows


# The course's consumer: LIST (to find the next key) + GET + DELETE per
# request, plus PUT (create, update) or DELETE (delete) on the store.
COURSE = {"create": 4, "update": 4, "delete": 4}

print(f"{N} requests of each type; AWS HTTP requests per request (start-up calls included)")
for flag, name in [("wb", "S3 -> S3"), ("dwt", "S3 -> DynamoDB (DynamoDB Local)")]:
    print(f"\n{name}")
    print(f"{'type':<8} {'widget-host':>12} {'course':>8}  breakdown (whole run)")
    for kind, per_request, calls in measure(flag):
        breakdown = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
        print(f"{kind:<8} {per_request:>12.3f} {COURSE[kind]:>8}  {breakdown}")
