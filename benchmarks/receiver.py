"""An OTLP/HTTP receiver for the benchmark: decodes every export for real and counts what arrived, per service.

    python benchmarks/receiver.py      # prints "PORT <n>", then serves POST /v1/{traces,metrics,logs}, GET /stats

Decoding with opentelemetry-proto makes the export cost on the sender real (a receiver that only drained the
socket would answer faster than a collector does) and lets the benchmark prove that a mode really exported:
GET /stats returns {"service.name": {"spans": n, "server_spans": n, "points": n, "exemplars": n, "logs": n, "exports": n}}.
"""

from __future__ import annotations

import gzip
import json
import signal
import sys
import threading
import urllib.parse
import zlib
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

_counts: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
_lock = threading.Lock()


def _service(resource: Any) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return "unknown_service"


def _count_traces(body: bytes) -> None:
    request = ExportTraceServiceRequest.FromString(body)
    for rs in request.resource_spans:
        spans = [span for ss in rs.scope_spans for span in ss.spans]
        servers = sum(1 for span in spans if span.kind == Span.SPAN_KIND_SERVER)
        with _lock:
            _counts[_service(rs.resource)]["spans"] += len(spans)
            _counts[_service(rs.resource)]["server_spans"] += servers


def _data_points(metric: Any) -> list[Any]:
    kind = metric.WhichOneof("data")
    return list(getattr(metric, kind).data_points) if kind else []


def _count_metrics(body: bytes) -> None:
    request = ExportMetricsServiceRequest.FromString(body)
    for rm in request.resource_metrics:
        points = [p for sm in rm.scope_metrics for m in sm.metrics for p in _data_points(m)]
        exemplars = sum(len(getattr(p, "exemplars", ())) for p in points)
        with _lock:
            _counts[_service(rm.resource)]["points"] += len(points)
            _counts[_service(rm.resource)]["exemplars"] += exemplars


def _count_logs(body: bytes) -> None:
    request = ExportLogsServiceRequest.FromString(body)
    for rl in request.resource_logs:
        n = sum(len(sl.log_records) for sl in rl.scope_logs)
        with _lock:
            _counts[_service(rl.resource)]["logs"] += n


_ROUTES = {
    "/v1/traces": (_count_traces, ExportTraceServiceResponse),
    "/v1/metrics": (_count_metrics, ExportMetricsServiceResponse),
    "/v1/logs": (_count_logs, ExportLogsServiceResponse),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as exporters expect

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per export would flood the run
        pass

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        path, _, query = self.path.partition("?")
        if path == "/ingest":  # Pyroscope's ingest API: a pprof profile from obsbox's continuous profiler
            self._count_profile(query, body)
            return
        route = _ROUTES.get(path)
        if route is None:
            self._reply(404, b"", "text/plain")
            return
        count, response = route
        try:
            count(body)
        except Exception as exc:  # a body that does not decode is a real failure of the sender: say so
            print(f"receiver: cannot decode {self.path}: {exc}", file=sys.stderr, flush=True)
            self._reply(400, str(exc).encode(), "text/plain")
            return
        with _lock:
            _counts["_all"]["exports"] += 1
        self._reply(200, response().SerializeToString(), "application/x-protobuf")

    def _count_profile(self, query: str, body: bytes) -> None:
        name = urllib.parse.parse_qs(query).get("name", ["unknown_service{}"])[0]
        try:
            gzip.decompress(body)
        except OSError as exc:
            self._reply(400, str(exc).encode(), "text/plain")
            return
        with _lock:
            _counts[name.partition("{")[0]]["profiles"] += 1
            _counts["_all"]["exports"] += 1
        self._reply(200, b"", "text/plain")

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._reply(404, b"", "text/plain")
            return
        with _lock:
            snapshot = {service: dict(c) for service, c in _counts.items()}
        self._reply(200, json.dumps(snapshot).encode(), "application/json")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # Explicit handlers: a child of a background shell job inherits SIGINT as ignored.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
