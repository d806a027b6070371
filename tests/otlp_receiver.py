"""An OTLP/HTTP trace receiver for the tests: what a collector does first.

POST /v1/traces takes an ExportTraceServiceRequest in protobuf, as a
collector does, decoded with the official definitions (the PyPI package
opentelemetry-proto); anything that does not decode is answered 400 and
kept out. GET /spans?service=NAME answers the spans received from that
service (its resource's service.name) as JSON, one object per span: ids in
hex, its name, kind, parent, attributes, status and events. Tests tell
their runs apart by service name (OTEL_SERVICE_NAME).

    python3 tests/otlp_receiver.py PORT
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

spans = []
lock = threading.Lock()


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(pairs):
    return {pair.key: value(pair.value) for pair in pairs}


def decoded(request):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "service": resource.get("service.name"),
                    "resource": resource,
                    "scope": scope_spans.scope.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": Span.SpanKind.Name(span.kind),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "attributes": attributes(span.attributes),
                    "status": Status.StatusCode.Name(span.status.code),
                    "events": [
                        {"name": event.name, "attributes": attributes(event.attributes)}
                        for event in span.events
                    ],
                }


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if urlparse(self.path).path != "/v1/traces":
            return self.answer(404, b"", "text/plain")
        if self.headers.get("Content-Type") != "application/x-protobuf":
            return self.answer(415, b"OTLP/HTTP protobuf only", "text/plain")
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception as error:  # a body that is not OTLP
            return self.answer(400, str(error).encode(), "text/plain")
        with lock:
            spans.extend(decoded(request))
        self.answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/health":
            return self.answer(200, b"ok", "text/plain")
        if url.path != "/spans":
            return self.answer(404, b"", "text/plain")
        service = parse_qs(url.query).get("service", [None])[0]
        with lock:
            chosen = [span for span in spans if service is None or span["service"] == service]
        self.answer(200, json.dumps(chosen).encode(), "application/json")

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
