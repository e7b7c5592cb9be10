"""Test helpers: a real OTLP/HTTP receiver, an in-process capture of obsbox's telemetry, and a pytest fixture.

>>> from obsbox.testing import OTLPReceiver
>>> with OTLPReceiver() as receiver:                        # doctest: +SKIP
...     telemetry = obsbox.configure(service_name="orders", endpoint=receiver.endpoint)
...     with telemetry.tracer.start_as_current_span("work"):
...         pass
...     telemetry.force_flush()
...     assert receiver.wait_for(lambda: receiver.spans(name="work"))

`capture()` configures obsbox for a block and reads its telemetry back from such a receiver, or, with
`in_memory=True`, from memory (an in-memory span processor and log sink; no port, no thread):

>>> with capture(in_memory=True) as cap:                    # doctest: +SKIP
...     client.get("/orders/42")
...     (span,) = cap.spans("GET /orders/{order_id}")

With pytest, the `otlp_receiver` fixture gives a running receiver per test; the plugin is registered through the
`pytest11` entry point of the obsbox distribution (or add ``pytest_plugins = ["obsbox.testing"]`` to a conftest).

The receiver decodes the protobuf bodies of POST /v1/traces, /v1/metrics and /v1/logs (gzip accepted) with
opentelemetry-proto, exactly as a collector would, and keeps flattened views of what arrived. It can also play a
failing or slow collector (`fail_status`, `delay`) to test export under faults.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar, cast

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
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

if TYPE_CHECKING:
    from obsbox.instrumentation.setup import Telemetry

__all__ = [
    "Capture",
    "InMemoryReceiver",
    "ExemplarRecord",
    "LogRecord",
    "MetricPoint",
    "OTLPReceiver",
    "Received",
    "SpanRecord",
    "capture",
    "otlp_receiver",
]

T = TypeVar("T")
Attributes = dict[str, Any]


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP AnyValue (arrays → lists, kvlists → dicts, bytes → bytes)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(kvs: Any) -> Attributes:
    """A dict from a repeated KeyValue field."""
    out: Attributes = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = any_value(kv.value)
    return out


@dataclass(frozen=True)
class SpanRecord:
    """One received span, flattened; ids are lowercase hex ('' when absent)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind (1 internal, 2 server, 3 client, 4 producer, 5 consumer)
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: Attributes
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    events: list[tuple[str, Attributes]]
    links: list[tuple[str, str]]
    trace_state: str
    flags: int
    scope: str
    resource: Attributes

    @property
    def duration_seconds(self) -> float:
        return (self.end_time_unix_nano - self.start_time_unix_nano) / 1e9


@dataclass(frozen=True)
class ExemplarRecord:
    value: float
    time_unix_nano: int
    trace_id: str
    span_id: str
    filtered_attributes: Attributes


@dataclass(frozen=True)
class MetricPoint:
    """One received data point with its metric's name, unit and kind.

    `kind` is gauge, sum, histogram, exponential_histogram or summary. For sums `value` is the point's value and
    `monotonic` tells a counter from an up-down counter; for histograms `count`, `sum`, `bucket_counts` and
    `explicit_bounds` are set. `temporality` is 1 (delta) or 2 (cumulative), 0 for gauges.
    """

    name: str
    unit: str
    description: str
    kind: str
    attributes: Attributes
    resource: Attributes
    scope: str
    start_time_unix_nano: int
    time_unix_nano: int
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()
    temporality: int = 0
    monotonic: bool = False
    exemplars: tuple[ExemplarRecord, ...] = field(default=())


@dataclass(frozen=True)
class LogRecord:
    """One received log record, flattened; ids are lowercase hex ('' when absent)."""

    body: Any
    severity_number: int
    severity_text: str
    attributes: Attributes
    trace_id: str
    span_id: str
    flags: int
    time_unix_nano: int
    observed_time_unix_nano: int
    event_name: str
    scope: str
    resource: Attributes


def _spans(req: ExportTraceServiceRequest) -> Iterator[SpanRecord]:
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield SpanRecord(
                    name=s.name,
                    trace_id=s.trace_id.hex(),
                    span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(),
                    kind=s.kind,
                    start_time_unix_nano=s.start_time_unix_nano,
                    end_time_unix_nano=s.end_time_unix_nano,
                    attributes=attributes(s.attributes),
                    status_code=s.status.code,
                    status_message=s.status.message,
                    events=[(e.name, attributes(e.attributes)) for e in s.events],
                    links=[(lk.trace_id.hex(), lk.span_id.hex()) for lk in s.links],
                    trace_state=s.trace_state,
                    flags=s.flags,
                    scope=ss.scope.name,
                    resource=resource,
                )


def _exemplars(point: Any) -> tuple[ExemplarRecord, ...]:
    out = []
    for e in point.exemplars:
        kind = e.WhichOneof("value")
        out.append(
            ExemplarRecord(
                value=float(getattr(e, kind)) if kind else 0.0,
                time_unix_nano=e.time_unix_nano,
                trace_id=e.trace_id.hex(),
                span_id=e.span_id.hex(),
                filtered_attributes=attributes(e.filtered_attributes),
            )
        )
    return tuple(out)


def _number(point: Any) -> float | None:
    kind = point.WhichOneof("value")
    return float(getattr(point, kind)) if kind else None


def _metrics(req: ExportMetricsServiceRequest) -> Iterator[MetricPoint]:
    for rm in req.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                common = {"name": m.name, "unit": m.unit, "description": m.description, "kind": kind or "",
                          "resource": resource, "scope": sm.scope.name}
                if kind == "gauge":
                    for p in m.gauge.data_points:
                        yield MetricPoint(**common, attributes=attributes(p.attributes),
                                          start_time_unix_nano=p.start_time_unix_nano,
                                          time_unix_nano=p.time_unix_nano, value=_number(p),
                                          exemplars=_exemplars(p))
                elif kind == "sum":
                    for p in m.sum.data_points:
                        yield MetricPoint(**common, attributes=attributes(p.attributes),
                                          start_time_unix_nano=p.start_time_unix_nano,
                                          time_unix_nano=p.time_unix_nano, value=_number(p),
                                          temporality=m.sum.aggregation_temporality,
                                          monotonic=m.sum.is_monotonic, exemplars=_exemplars(p))
                elif kind == "histogram":
                    for p in m.histogram.data_points:
                        yield MetricPoint(**common, attributes=attributes(p.attributes),
                                          start_time_unix_nano=p.start_time_unix_nano,
                                          time_unix_nano=p.time_unix_nano, count=p.count, sum=p.sum,
                                          bucket_counts=tuple(p.bucket_counts),
                                          explicit_bounds=tuple(p.explicit_bounds),
                                          temporality=m.histogram.aggregation_temporality,
                                          exemplars=_exemplars(p))
                elif kind == "exponential_histogram":
                    for p in m.exponential_histogram.data_points:
                        yield MetricPoint(**common, attributes=attributes(p.attributes),
                                          start_time_unix_nano=p.start_time_unix_nano,
                                          time_unix_nano=p.time_unix_nano, count=p.count, sum=p.sum,
                                          temporality=m.exponential_histogram.aggregation_temporality,
                                          exemplars=_exemplars(p))
                elif kind == "summary":
                    for p in m.summary.data_points:
                        yield MetricPoint(**common, attributes=attributes(p.attributes),
                                          start_time_unix_nano=p.start_time_unix_nano,
                                          time_unix_nano=p.time_unix_nano, count=p.count, sum=p.sum)


def _logs(req: ExportLogsServiceRequest) -> Iterator[LogRecord]:
    for rl in req.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                yield LogRecord(
                    body=any_value(r.body),
                    severity_number=r.severity_number,
                    severity_text=r.severity_text,
                    attributes=attributes(r.attributes),
                    trace_id=r.trace_id.hex(),
                    span_id=r.span_id.hex(),
                    flags=r.flags,
                    time_unix_nano=r.time_unix_nano,
                    observed_time_unix_nano=r.observed_time_unix_nano,
                    event_name=r.event_name,
                    scope=sl.scope.name,
                    resource=resource,
                )


_SIGNALS: dict[str, tuple[type[Any], type[Any]]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}


class Received:
    """Export requests that arrived, decoded, and flattened views of them (what OTLPReceiver and InMemoryReceiver
    share)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._traces: list[ExportTraceServiceRequest] = []
        self._metrics: list[ExportMetricsServiceRequest] = []
        self._logs: list[ExportLogsServiceRequest] = []
        self.headers: list[dict[str, str]] = []  # request headers of every accepted export, in arrival order
        self.rejected = 0  # exports answered with fail_status or refused as undecodable

    # --- what arrived ---------------------------------------------------------------------------------------
    @property
    def trace_requests(self) -> list[ExportTraceServiceRequest]:
        with self._lock:
            return list(self._traces)

    @property
    def metric_requests(self) -> list[ExportMetricsServiceRequest]:
        with self._lock:
            return list(self._metrics)

    @property
    def log_requests(self) -> list[ExportLogsServiceRequest]:
        with self._lock:
            return list(self._logs)

    def spans(self, name: str | None = None) -> list[SpanRecord]:
        """Every span received so far (optionally only those called `name`), in arrival order."""
        out = [s for req in self.trace_requests for s in _spans(req)]
        return out if name is None else [s for s in out if s.name == name]

    def metrics(self, name: str | None = None) -> list[MetricPoint]:
        """Every data point received so far (optionally of one metric), in arrival order.

        With cumulative temporality each export repeats the running totals: use `latest()` for the newest point
        per metric, attribute set and resource.
        """
        out = [p for req in self.metric_requests for p in _metrics(req)]
        return out if name is None else [p for p in out if p.name == name]

    def latest(self, name: str) -> list[MetricPoint]:
        """The newest point of metric `name` per (resource, attribute set)."""
        newest: dict[tuple[str, str], MetricPoint] = {}
        for p in self.metrics(name):
            key = (repr(sorted(p.resource.items())), repr(sorted(p.attributes.items())))
            if key not in newest or p.time_unix_nano >= newest[key].time_unix_nano:
                newest[key] = p
        return list(newest.values())

    def logs(self) -> list[LogRecord]:
        """Every log record received so far, in arrival order."""
        return [r for req in self.log_requests for r in _logs(req)]

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()
            self._metrics.clear()
            self._logs.clear()
            self.headers.clear()

    def wait_for(self, predicate: Callable[..., T], timeout: float = 10.0) -> T:
        """Poll `predicate` (no argument, or the receiver) until it returns something truthy; return that.

        Raises TimeoutError with a summary of what did arrive.
        """
        takes_receiver = _arity(predicate) >= 1
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self) if takes_receiver else predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s; received {self.summary()}")
            with self._changed:
                self._changed.wait(min(remaining, 0.05))

    def summary(self) -> str:
        return (
            f"{len(self.spans())} spans {sorted({s.name for s in self.spans()})[:10]}, "
            f"{len(self.metrics())} metric points {sorted({p.name for p in self.metrics()})[:20]}, "
            f"{len(self.logs())} log records, {self.rejected} rejected exports"
        )

    def _store(self, path: str, message: Any, headers: dict[str, str]) -> None:
        with self._changed:
            stores: dict[str, list[Any]] = {"/v1/traces": self._traces, "/v1/metrics": self._metrics,
                                            "/v1/logs": self._logs}
            stores[path].append(message)
            self.headers.append(headers)
            self._changed.notify_all()


class OTLPReceiver(Received):
    """A real OTLP/HTTP (protobuf) receiver on 127.0.0.1 with an ephemeral port, for tests.

    >>> with OTLPReceiver() as receiver:                    # doctest: +SKIP
    ...     exporter = OTLPSpanExporter(endpoint=receiver.endpoint + "/v1/traces")
    ...     receiver.wait_for(lambda: receiver.spans())

    Set `fail_status` (e.g. 503) to answer every export with that status (with `retry_after`, a Retry-After header),
    `delay` (seconds) to answer slowly.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self.fail_status: int | None = None
        self.retry_after: str | None = None  # the Retry-After header sent with fail_status
        self.delay: float = 0.0
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """Base URL ("http://127.0.0.1:PORT"); exporters append /v1/traces, /v1/metrics, /v1/logs."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OTLPReceiver:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP -----------------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: tests read the data
                return None

            def _answer(self, status: int, body: bytes = b"", content_type: str = "application/x-protobuf",
                        retry_after: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the exporter gave up waiting
                    self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                route = _SIGNALS.get(self.path.split("?", 1)[0])
                if route is None:
                    self._answer(404, b"unknown path", "text/plain")
                    return
                if receiver.fail_status is not None:
                    with receiver._lock:
                        receiver.rejected += 1
                    self._answer(receiver.fail_status, b"failing on purpose", "text/plain", receiver.retry_after)
                    return
                request_type, response_type = route
                try:
                    encoding = (self.headers.get("Content-Encoding") or "").lower()
                    if encoding == "gzip":
                        raw = gzip.decompress(raw)
                    elif encoding == "deflate":
                        raw = zlib.decompress(raw)
                    message = request_type()
                    message.ParseFromString(raw)
                except Exception as exc:  # protobuf's DecodeError, gzip/zlib errors: all mean a bad body
                    with receiver._lock:
                        receiver.rejected += 1
                    self._answer(400, f"undecodable body: {exc}".encode(), "text/plain")
                    return
                receiver._store(_route_path(self.path), message, {k.lower(): v for k, v in self.headers.items()})
                self._answer(200, response_type().SerializeToString())

        return Handler


def _route_path(path: str) -> str:
    return path.split("?", 1)[0]


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    return sum(1 for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class InMemoryReceiver(Received):
    """obsbox's telemetry kept in this process, without HTTP or an export thread: what `capture(in_memory=True)`
    reads.

    Spans reach it through obsbox's span processor protocol (a `SpanCapture` on the tracer provider), log records
    through the logger's export sink; `pull()` encodes them with obsbox's own encoder, as the OTLP export would,
    and collects the metrics, so the records read here are the ones a collector would get.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        super().__init__()
        from obsbox.instrumentation._processors import SpanCapture

        self.telemetry = telemetry
        self.span_capture = SpanCapture()
        self.log_items: list[Any] = []

    def pull(self) -> None:
        """Move what was captured since the last pull into the received requests; add a metrics collection."""
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        from obsbox.instrumentation._encode import encode_logs_request, encode_resource, encode_spans_request

        resource = encode_resource(self.telemetry.resource)
        # (the lean span is what the encoder's SpanData protocol describes; its fields are lists where the
        # protocol says Sequence, which mypy's invariance of mutable protocol members refuses)
        spans = cast("list[Any]", self.span_capture.take())
        if spans:
            self._store("/v1/traces", ExportTraceServiceRequest.FromString(encode_spans_request(resource, spans)),
                        {})
        items, self.log_items = self.log_items, []
        if items:
            self._store("/v1/logs", ExportLogsServiceRequest.FromString(encode_logs_request(resource, items)), {})
        data = self.telemetry.collect_metrics()
        if any(sm.metrics for rm in data.resource_metrics for sm in rm.scope_metrics):
            self._store("/v1/metrics", encode_metrics(data), {})


class Capture:
    """obsbox's telemetry of a block of code: exported for real to an in-process receiver, or kept in memory.

    >>> with capture(service_name="orders") as telemetry:   # doctest: +SKIP
    ...     obsbox.logger.info("hello")
    ...     assert telemetry.logs()[0].body == "hello"

    Reading `spans()`, `metrics()` or `logs()` first flushes, so what the code did is there.
    """

    def __init__(self, receiver: Received, telemetry: Telemetry) -> None:
        self.receiver = receiver
        self.telemetry = telemetry

    def flush(self) -> None:
        self.telemetry.force_flush()
        if isinstance(self.receiver, InMemoryReceiver):
            self.receiver.pull()

    def spans(self, name: str | None = None) -> list[SpanRecord]:
        self.flush()
        return self.receiver.spans(name)

    def metrics(self, name: str | None = None) -> list[MetricPoint]:
        self.flush()
        return self.receiver.metrics(name)

    def latest(self, name: str) -> list[MetricPoint]:
        self.flush()
        return self.receiver.latest(name)

    def logs(self) -> list[LogRecord]:
        self.flush()
        return self.receiver.logs()

    def clear(self) -> None:
        self.flush()
        self.receiver.clear()


@contextlib.contextmanager
def capture(*, service_name: str = "test-service", in_memory: bool = False,
            **configure_kwargs: Any) -> Iterator[Capture]:
    """Configure obsbox for the block and capture its telemetry; shut it down afterwards.

    By default everything is exported over OTLP/HTTP to a fresh in-process `OTLPReceiver` (the real path).
    `in_memory=True` exports nothing: spans are kept by an in-memory span processor, log records by the logger's
    export sink and metrics collected when read, then encoded as the exporter would; no port, no thread, no wait:

    >>> with capture(in_memory=True) as cap:                              # doctest: +SKIP
    ...     with obsbox.configure().tracer.start_as_current_span("work"):
    ...         obsbox.logger.info("working")
    ...     (span,) = cap.spans("work")
    ...     assert cap.logs()[0].trace_id == span.trace_id

    (Log records emitted through the OpenTelemetry logs API, rather than loguru or stdlib logging, reach only the
    receiver.)
    """
    from obsbox.instrumentation import logs
    from obsbox.instrumentation.setup import configure, current_telemetry

    if not in_memory:
        with OTLPReceiver() as receiver:
            telemetry = configure(service_name=service_name, endpoint=receiver.endpoint, **configure_kwargs)
            try:
                yield Capture(receiver, telemetry)
            finally:
                telemetry.shutdown()
        return
    telemetry = configure(service_name=service_name, traces_exporter="none", metrics_exporter="none",
                          logs_exporter="none", **configure_kwargs)
    try:
        memory = InMemoryReceiver(telemetry)
        if current_telemetry() is telemetry:
            from opentelemetry import trace

            provider = trace.get_tracer_provider()
            add = getattr(provider, "add_processor", None)
            if add is not None:
                add(memory.span_capture)
            logs.attach_export(memory.log_items.append, telemetry.settings.logs.log_level)
        yield Capture(memory, telemetry)
    finally:
        telemetry.shutdown()


# --- pytest plugin ----------------------------------------------------------------------------------------------
try:
    import pytest
except ImportError:  # the helpers above work without pytest
    pass
else:

    @pytest.fixture
    def otlp_receiver() -> Iterator[OTLPReceiver]:
        """A running OTLPReceiver for one test, stopped afterwards."""
        with OTLPReceiver() as receiver:
            yield receiver
