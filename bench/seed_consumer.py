#!/usr/bin/env python3
"""The seed-style consumer, for the benchmark (bench/run.sh): requests
taken one at a time, as the course's consumer.py described it: LIST the
bucket and take the smallest key, GET it, store the widget (an update or delete reads it
first), DELETE the request. Python and boto3, no concurrency.

    seed_consumer.py REQUEST_BUCKET (s3 WIDGET_BUCKET | dynamodb TABLE) [SECONDS]

Endpoints come from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB. Stops
when the bucket is empty or after SECONDS, and prints one JSON line:
requests, seconds, calls, p50_ms, p99_ms.
"""
import json
import os
import sys
import time

import boto3

bucket, kind, dest = sys.argv[1], sys.argv[2], sys.argv[3]
limit = float(sys.argv[4]) if len(sys.argv) > 4 else float("inf")
s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"))
ddb = boto3.client("dynamodb", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"))
calls = 0
latencies = []
started = time.monotonic()


def widget_key(r):
    return f"widgets/{r['owner'].lower().replace(' ', '-')}/{r['widgetId']}"


def item(doc):
    out = {}
    for name, value in doc.items():
        if name == "otherAttributes":
            for a in value or []:
                out[a["name"]] = {"S": a["value"]}
        elif isinstance(value, str):
            out[name] = {"S": value}
    return out


while time.monotonic() - started < limit:
    t0 = time.monotonic()
    # As the seed did: list the bucket (a page of up to 1,000 keys) and take
    # the smallest key, once per request.
    listed = s3.list_objects_v2(Bucket=bucket)
    calls += 1
    if not listed.get("Contents"):
        break
    key = listed["Contents"][0]["Key"]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    calls += 1
    try:
        r = json.loads(body)
        doc = {"id": r["widgetId"], "owner": r["owner"], "label": r.get("label"),
               "description": r.get("description"), "otherAttributes": r.get("otherAttributes")}
        if kind == "s3":
            if r["type"] == "create":
                s3.put_object(Bucket=dest, Key=widget_key(r), Body=json.dumps(doc).encode())
                calls += 1
            else:
                try:
                    s3.get_object(Bucket=dest, Key=widget_key(r))["Body"].read()
                    calls += 1
                    if r["type"] == "delete":
                        s3.delete_object(Bucket=dest, Key=widget_key(r))
                    else:
                        s3.put_object(Bucket=dest, Key=widget_key(r), Body=json.dumps(doc).encode())
                    calls += 1
                except s3.exceptions.NoSuchKey:
                    calls += 1
        else:
            if r["type"] == "create":
                ddb.put_item(TableName=dest, Item=item(doc))
                calls += 1
            else:
                found = ddb.get_item(TableName=dest, Key={"id": {"S": r["widgetId"]}}, ConsistentRead=True)
                calls += 1
                if "Item" in found:
                    if r["type"] == "delete":
                        ddb.delete_item(TableName=dest, Key={"id": {"S": r["widgetId"]}})
                    else:
                        ddb.put_item(TableName=dest, Item=item(doc))
                    calls += 1
    except (ValueError, KeyError, TypeError):
        pass  # an invalid request: the seed left it; here it is simply removed
    s3.delete_object(Bucket=bucket, Key=key)
    calls += 1
    latencies.append(time.monotonic() - t0)

seconds = time.monotonic() - started
latencies.sort()
q = lambda p: latencies[round((len(latencies) - 1) * p)] * 1000 if latencies else 0
print(json.dumps({"requests": len(latencies), "seconds": seconds, "calls": calls,
                  "p50_ms": q(0.5), "p99_ms": q(0.99)}))
