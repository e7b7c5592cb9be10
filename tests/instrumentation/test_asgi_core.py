"""The request path's shared pieces (trace context parsing, redaction, host parsing) and the capture the middleware
tests use: a runtime whose tracer is a real SDK tracer exporting to memory and whose recorders keep every call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from obsbox.instrumentation import _runtime
from obsbox.instrumentation._propagation import extract_context, inject_headers, parse_traceparent
from obsbox.instrumentation._redact import redact_query, redact_url
from obsbox.instrumentation._server import span_name, split_host


@dataclass
class Recorder:
    """Stands in for the pipeline's recorders; keeps (value, attributes, span_context) per call."""

    calls: list[tuple[float, dict[str, Any], SpanContext | None]] = field(default_factory=list)

    def record(self, seconds: float, attributes: Mapping[str, Any], span_context: SpanContext | None = None) -> None:
        self.calls.append((seconds, dict(attributes), span_context))

    def add(self, amount: int, attributes: Mapping[str, Any]) -> None:
        self.calls.append((amount, dict(attributes), None))

    def begin(self, request: Any) -> None:  # as an active-requests recorder
        self.add(1, request.active)

    def end(self, request: Any) -> None:
        self.add(-1, request.active)


@dataclass
class Captured:
    exporter: InMemorySpanExporter
    server_duration: Recorder
    server_active: Recorder
    client_duration: Recorder

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if kind is None or s.kind == kind]

    def server_spans(self) -> list[ReadableSpan]:
        return self.spans(SpanKind.SERVER)

    def active_balance(self) -> int:
        return int(sum(amount for amount, _, _ in self.server_active.calls))


@contextmanager
def captured() -> Iterator[Captured]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cap = Captured(exporter, Recorder(), Recorder(), Recorder())
    previous = _runtime.current()
    _runtime.install(_runtime.Runtime(provider.get_tracer("test"), cap.server_duration, cap.server_active,
                                      cap.client_duration))
    try:
        yield cap
    finally:
        _runtime.install(previous)
        provider.shutdown()


# --- trace context -------------------------------------------------------------------------------------------

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_parsed_like_the_opentelemetry_propagator() -> None:
    ours = parse_traceparent(TP, "congo=t61rcWkgMzE")
    theirs = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": TP, "tracestate": "congo=t61rcWkgMzE"})
    ).get_span_context()
    assert ours == theirs
    assert ours is not None and ours.is_remote and ours.trace_flags == TraceFlags.SAMPLED
    assert ours.trace_state.get("congo") == "t61rcWkgMzE"


@pytest.mark.parametrize("bad", [
    "", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",              # short
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",             # upper case
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",             # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",             # zero span id
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",             # forbidden version
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",       # version 00 has no extra fields
    "00-0x0f7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",            # int() would accept 0x
    "00-0af7651916cd43dd8448eb211c8031_c-b7ad6b7169203331-01",             # int() would accept _
])
def test_malformed_traceparent_starts_a_new_trace(bad: str) -> None:
    assert parse_traceparent(bad, None) is None
    assert TraceContextTextMapPropagator().extract({"traceparent": bad}) == Context()


def test_future_version_with_extra_fields_accepted() -> None:
    assert parse_traceparent(TP.replace("00-", "01-", 1) + "-what-comes", None) is not None


def test_baggage_extracted_and_injected() -> None:
    ctx = extract_context(TP, None, "user=ann", {}, dict)
    assert ctx is not None and baggage.get_baggage("user", ctx) == "ann"
    from opentelemetry import context as otel_context

    token = otel_context.attach(ctx)
    try:
        headers: dict[str, str] = {}
        inject_headers(trace.get_current_span().get_span_context(), headers)
    finally:
        otel_context.detach(token)
    assert headers["traceparent"] == TP and headers["baggage"] == "user=ann"


class _PlainPropagator(TextMapPropagator):
    """A non-W3C propagator: `x-trace: <trace id hex>:<span id hex>`."""

    def extract(self, carrier: CarrierT, context: Context | None = None,
                getter: Getter[CarrierT] = default_getter) -> Context:
        values = getter.get(carrier, "x-trace")
        if not values:
            return context or Context()
        trace_id, span_id = values[0].split(":")
        remote = SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(1))
        return trace.set_span_in_context(trace.NonRecordingSpan(remote), context)

    def inject(self, carrier: CarrierT, context: Context | None = None,
               setter: Setter[CarrierT] = default_setter) -> None:
        sc = trace.get_current_span(context).get_span_context()
        setter.set(carrier, "x-trace", f"{sc.trace_id:032x}:{sc.span_id:016x}")

    @property
    def fields(self) -> set[str]:
        return {"x-trace"}


def test_other_global_propagator_is_honoured() -> None:
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(_PlainPropagator())
    try:
        carrier = {"x-trace": "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331", "traceparent": TP[:-2] + "00"}
        ctx = extract_context(carrier["traceparent"], None, None, carrier, dict)
        assert ctx is not None
        assert trace.get_current_span(ctx).get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert trace.get_current_span(ctx).get_span_context().trace_flags == TraceFlags.SAMPLED
        headers: dict[str, str] = {}
        inject_headers(trace.get_current_span(ctx).get_span_context(), headers)
        assert headers == {"x-trace": "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331"}
    finally:
        propagate.set_global_textmap(previous)


# --- redaction, hosts, names ---------------------------------------------------------------------------------

def test_query_redaction() -> None:
    query = ("q=shoes&password=p1&Token=t&api_key=k&apiKey=k2&key=k3&signature=s&X-Amz-Signature=s2"
             "&client_secret=c&access_token=a&page=2&flag&empty=")
    redacted = redact_query(query)
    assert redacted == ("q=shoes&password=REDACTED&Token=REDACTED&api_key=REDACTED&apiKey=REDACTED&key=REDACTED"
                        "&signature=REDACTED&X-Amz-Signature=REDACTED&client_secret=REDACTED"
                        "&access_token=REDACTED&page=2&flag&empty=")
    for secret in ("p1", "=t&", "=k&", "k2", "k3", "=s&", "s2", "=c&", "=a&"):
        assert secret not in redacted
    assert redact_query("api%5Fkey=zz") == "api%5Fkey=REDACTED"
    assert redact_query("page=1&sort=asc") == "page=1&sort=asc"


def test_url_redaction() -> None:
    assert redact_url("https://u:pw@h.example:8443/p?a=1&secret=x#frag") == (
        "https://REDACTED:REDACTED@h.example:8443/p?a=1&secret=REDACTED#frag")
    assert redact_url("http://h/p") == "http://h/p"


def test_split_host() -> None:
    assert split_host("example.com:8080", "http") == ("example.com", 8080)
    assert split_host("example.com", "http") == ("example.com", 80)
    assert split_host("[::1]", "https") == ("::1", 443)
    assert split_host("[::1]:9", "http") == ("::1", 9)


def test_span_names_follow_the_conventions() -> None:
    assert span_name("GET", "/items/{id}") == "GET /items/{id}"
    assert span_name("GET", None) == "GET"
    assert span_name("_OTHER", "/x") == "HTTP /x"
