"""The request path's handle on the telemetry pipeline: the seam between the middleware and the exporters.

Middleware (ASGI, WSGI, HTTP clients) asks `current()` for the tracer and the HTTP instruments once per request and
calls only the small protocols below. `configure()` swaps in the fast implementations; before it (or with the SDK
disabled) they fall back to whatever the global OpenTelemetry providers give, so instrumented code never breaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanContext

from obsbox.instrumentation._metrics import ActiveRequest
from obsbox.instrumentation.catalogue import SEMCONV_METRICS

AttributeValue = str | int


class DurationRecorder(Protocol):
    def record(
        self, seconds: float, attributes: Mapping[str, AttributeValue], span_context: SpanContext | None = None
    ) -> None: ...


class ActiveRecorder(Protocol):
    """Counts the requests in flight: `begin` when one starts, `end` (once) when it is done."""

    def begin(self, request: ActiveRequest) -> None: ...

    def end(self, request: ActiveRequest) -> None: ...


class Runtime:
    """What the request path needs. Replaced as a whole by `install()`; never mutated in place."""

    __slots__ = ("tracer", "server_duration", "server_active", "client_duration", "db_duration")

    def __init__(
        self,
        tracer: trace.Tracer,
        server_duration: DurationRecorder,
        server_active: ActiveRecorder,
        client_duration: DurationRecorder,
        db_duration: DurationRecorder | None = None,
    ) -> None:
        self.tracer = tracer
        self.server_duration = server_duration
        self.server_active = server_active
        self.client_duration = client_duration
        # `db.client.operation.duration` (databases and caches, see integrations/); the API's when not given.
        self.db_duration = db_duration if db_duration is not None else _api_histogram("db.client.operation.duration")


class _ApiHistogram:
    """Fallback: an OpenTelemetry API histogram (exemplars come from the current context)."""

    __slots__ = ("_h",)

    def __init__(self, h: metrics.Histogram) -> None:
        self._h = h

    def record(
        self, seconds: float, attributes: Mapping[str, AttributeValue], span_context: SpanContext | None = None
    ) -> None:
        self._h.record(seconds, attributes)


class _ApiActive:
    """Fallback: an OpenTelemetry API up-down counter, one up and one down per request."""

    __slots__ = ("_c",)

    def __init__(self, c: metrics.UpDownCounter) -> None:
        self._c = c

    def begin(self, request: ActiveRequest) -> None:
        self._c.add(1, request.active)

    def end(self, request: ActiveRequest) -> None:
        self._c.add(-1, request.active)


def _api_histogram(name: str) -> _ApiHistogram:
    spec = SEMCONV_METRICS[name]
    return _ApiHistogram(metrics.get_meter("obsbox").create_histogram(spec.name, spec.unit, spec.description))


def _api_runtime() -> Runtime:
    meter = metrics.get_meter("obsbox")
    server = SEMCONV_METRICS["http.server.request.duration"]
    active = SEMCONV_METRICS["http.server.active_requests"]
    client = SEMCONV_METRICS["http.client.request.duration"]
    return Runtime(
        tracer=trace.get_tracer("obsbox"),
        server_duration=_ApiHistogram(meter.create_histogram(server.name, server.unit, server.description)),
        server_active=_ApiActive(meter.create_up_down_counter(active.name, active.unit, active.description)),
        client_duration=_ApiHistogram(meter.create_histogram(client.name, client.unit, client.description)),
    )


_current: Runtime | None = None


def current() -> Runtime:
    """The runtime in force: the one `configure()` installed, else one over the global OpenTelemetry API."""
    global _current
    if _current is None:
        _current = _api_runtime()
    return _current


def install(runtime: Runtime | None) -> None:
    """Install the runtime `configure()` built (None: fall back to the global API again)."""
    global _current
    _current = runtime
