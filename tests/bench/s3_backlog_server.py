#!/usr/bin/env python3
"""A simulated S3 bucket holding N generated requests, for measuring the
host on a backlog no local S3 server here holds: keys 0000000000000 to
N-1 (13 digits), each a small create request generated from its number,
answered to the S3 calls the request source makes (HeadBucket,
ListObjectsV2 with start-after, GetObject, DeleteObject, and the start-up
probe's PutObject, DeleteObjects and HeadObject). Deleted keys are
remembered as a set of numbers; nothing else is stored. Not a test
double for correctness (the tests use moto): a load generator that never
runs out of objects.

    tests/bench/s3_backlog_server.py PORT N
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import escape

port, n = int(sys.argv[1]), int(sys.argv[2])
deleted = set()
extra = {}  # objects put by the host (its probe), by key


def body(i):
    return (f'{{"type":"create","requestId":"r{i}","widgetId":"w{i % 50000}",'
            f'"owner":"Sue Smith","label":"L{i}"}}').encode()


def etag(data):
    return f'"{len(data):032x}"'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, data=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def parts(self):
        url = urlparse(self.path)
        path = unquote(url.path).lstrip("/")
        bucket, _, key = path.partition("/")
        return bucket, key, parse_qs(url.query, keep_blank_values=True)

    def number(self, key):
        return int(key) if len(key) == 13 and key.isdigit() and int(key) < n else None

    def drain(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_HEAD(self):
        _, key, _ = self.parts()
        if not key:
            return self.reply(200)
        i = self.number(key)
        if key in extra:
            return self.reply(200, b"", [("ETag", etag(extra[key]))])
        if i is not None and i not in deleted:
            return self.reply(200, b"", [("ETag", etag(body(i)))])
        self.reply(404)

    def do_GET(self):
        bucket, key, query = self.parts()
        if not key and "list-type" in query:
            return self.list(bucket, query)
        i = self.number(key)
        if i is None or i in deleted:
            return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>", [("Content-Type", "application/xml")])
        data = body(i)
        self.reply(200, data, [("ETag", etag(data)), ("Content-Type", "application/json")])

    def list(self, bucket, query):
        after = query.get("start-after", [""])[0]
        limit = int(query.get("max-keys", ["1000"])[0])
        start = int(after) + 1 if after.isdigit() else (0 if after < "0" else n)
        items, i = [], start
        while i < n and len(items) < limit:
            if i not in deleted:
                data = body(i)
                items.append(f"<Contents><Key>{i:013d}</Key><Size>{len(data)}</Size><ETag>{escape(etag(data))}</ETag>"
                             f"<LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>")
            i += 1
        truncated = "true" if i < n else "false"
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>{bucket}</Name>'
               f"<KeyCount>{len(items)}</KeyCount><MaxKeys>{limit}</MaxKeys><IsTruncated>{truncated}</IsTruncated>"
               + "".join(items) + "</ListBucketResult>").encode()
        self.reply(200, xml, [("Content-Type", "application/xml")])

    def do_PUT(self):
        _, key, _ = self.parts()
        extra[key] = self.drain()
        self.reply(200, b"", [("ETag", etag(extra[key]))])

    def do_POST(self):
        # DeleteObjects, as the probe sends it: ETags ignored, as Garage does.
        data = self.drain().decode(errors="replace")
        for chunk in data.split("<Key>")[1:]:
            key = chunk.split("</Key>")[0]
            extra.pop(key, None)
            if (i := self.number(key)) is not None:
                deleted.add(i)
        self.reply(200, b'<?xml version="1.0" encoding="UTF-8"?><DeleteResult></DeleteResult>',
                   [("Content-Type", "application/xml")])

    def do_DELETE(self):
        _, key, _ = self.parts()
        self.drain()
        extra.pop(key, None)
        if (i := self.number(key)) is not None:
            deleted.add(i)
        self.reply(204)


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
