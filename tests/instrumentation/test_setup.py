"""configure(): resource, global providers, samplers, propagation, metrics with exemplars, idempotence, shutdown."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import obsbox
from obsbox.instrumentation import _runtime
from obsbox.instrumentation._metrics import AttributeSet
from obsbox.instrumentation.catalogue import HTTP_DURATION_BUCKETS
from obsbox.instrumentation.setup import Telemetry
from obsbox.testing import OTLPReceiver, capture

FAST = {"metric_export_interval": 60.0, "schedule_delay": 0.05, "console": False}


@pytest.fixture
def telemetry(otlp_receiver: OTLPReceiver) -> Iterator[Telemetry]:
    t = obsbox.configure(service_name="setup-test", service_version="1.2.3", environment="test",
                         endpoint=otlp_receiver.endpoint, **FAST)  # type: ignore[arg-type]
    yield t
    t.shutdown()


def test_resource_attributes(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    with trace.get_tracer("user").start_as_current_span("work"):
        pass
    telemetry.force_flush()
    (span,) = otlp_receiver.spans("work")
    r = span.resource
    assert r["service.name"] == "setup-test" and r["service.version"] == "1.2.3"
    assert r["deployment.environment.name"] == "test"
    uuid.UUID(r["service.instance.id"])
    assert r["process.pid"] > 0 and r["host.name"] and r["process.runtime.name"] == "cpython"
    assert span.scope == "user"


def test_otel_resource_attributes_and_service_name_env(monkeypatch: pytest.MonkeyPatch,
                                                       otlp_receiver: OTLPReceiver) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=shop,team=core,service.name=ignored")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    with capture(service_name=None, **FAST) as cap:  # type: ignore[arg-type]
        with trace.get_tracer("t").start_as_current_span("s"):
            pass
        (span,) = cap.spans("s")
    assert span.resource["service.name"] == "from-env"
    assert span.resource["service.namespace"] == "shop" and span.resource["team"] == "core"


def test_globals_are_obsbox_and_user_spans_nest_under_the_request_span(telemetry: Telemetry,
                                                                       otlp_receiver: OTLPReceiver) -> None:
    runtime = _runtime.current()
    with (
        runtime.tracer.start_as_current_span("GET /items/{id}", kind=trace.SpanKind.SERVER) as server,
        trace.get_tracer("mylib").start_as_current_span("db") as db,
    ):
        assert trace.get_current_span() is db
    telemetry.force_flush()
    spans = {s.name: s for s in otlp_receiver.spans()}
    assert spans["db"].parent_span_id == spans["GET /items/{id}"].span_id
    assert spans["db"].trace_id == format(server.get_span_context().trace_id, "032x")
    assert spans["GET /items/{id}"].kind == 2


def test_w3c_propagation_is_global(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    carrier: dict[str, str] = {}
    with trace.get_tracer("t").start_as_current_span("client") as span:
        propagate.inject(carrier)
    ctx = span.get_span_context()
    assert carrier["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    remote = propagate.extract({"traceparent": carrier["traceparent"], "baggage": "tenant=a"})
    with trace.get_tracer("t").start_as_current_span("server", context=remote):
        pass
    telemetry.force_flush()
    (server,) = otlp_receiver.spans("server")
    assert server.parent_span_id == f"{ctx.span_id:016x}" and server.flags == 0x300  # remote parent


@pytest.mark.parametrize(
    ("sampler", "ratio", "parent_sampled", "expected"),
    [
        ("parentbased_always_on", None, None, True),
        ("parentbased_always_on", None, False, False),
        ("parentbased_always_off", None, True, True),
        ("always_off", None, None, False),
        ("traceidratio", 0.0, None, False),
        ("traceidratio", 1.0, None, True),
        ("parentbased_traceidratio", 0.0, True, True),
    ],
)
def test_samplers(otlp_receiver: OTLPReceiver, sampler: str, ratio: float | None, parent_sampled: bool | None,
                  expected: bool) -> None:
    t = obsbox.configure(service_name="sampling", endpoint=otlp_receiver.endpoint, sampler=sampler,
                         sample_ratio=ratio, **FAST)  # type: ignore[arg-type]
    try:
        ctx = None
        if parent_sampled is not None:
            parent = SpanContext(0x1234, 0x5678, True, TraceFlags(1 if parent_sampled else 0))
            ctx = trace.set_span_in_context(NonRecordingSpan(parent))
        with trace.get_tracer("t").start_as_current_span("sampled?", context=ctx) as span:
            assert span.is_recording() is expected
            assert bool(span.get_span_context().trace_flags.sampled) is expected
        t.force_flush()
        assert bool(otlp_receiver.spans("sampled?")) is expected
    finally:
        t.shutdown()


def test_ratio_sampler_keeps_about_the_ratio(otlp_receiver: OTLPReceiver) -> None:
    t = obsbox.configure(service_name="ratio", endpoint=otlp_receiver.endpoint, sampler="traceidratio",
                         sample_ratio=0.25, **FAST)  # type: ignore[arg-type]
    try:
        kept = sum(trace.get_tracer("t").start_span("x").is_recording() for _ in range(4000))
        assert 800 < kept < 1200
    finally:
        t.shutdown()


class InFlightRequest:
    active = AttributeSet({"http.request.method": "GET", "url.scheme": "http"})


def test_http_metrics_with_semconv_buckets_and_exemplars(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    runtime = _runtime.current()
    attrs = {"http.request.method": "GET", "url.scheme": "http", "http.route": "/items/{id}",
             "http.response.status_code": 200}
    with runtime.tracer.start_as_current_span("GET /items/{id}") as span:
        runtime.server_duration.record(0.003, attrs, span.get_span_context())
        runtime.server_duration.record(0.2, dict(reversed(list(attrs.items()))))  # other order, current span
    first, second = InFlightRequest(), InFlightRequest()
    runtime.server_active.begin(first)
    runtime.server_active.begin(second)
    runtime.server_active.end(first)  # `second` is still in flight when the metrics are exported
    # user code's own instruments go through the SDK MeterProvider into the same export
    metrics.get_meter("user").create_counter("orders.placed", unit="{order}").add(2, {"kind": "web"})
    telemetry.force_flush()
    (h,) = otlp_receiver.latest("http.server.request.duration")
    assert h.unit == "s" and h.count == 2 and h.temporality == 2
    assert h.explicit_bounds == HTTP_DURATION_BUCKETS and h.attributes == attrs
    assert h.bucket_counts[0] == 1 and h.bucket_counts[HTTP_DURATION_BUCKETS.index(0.25)] == 1
    ctx = span.get_span_context()
    assert {(e.trace_id, e.span_id) for e in h.exemplars} == {(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")}
    assert len(h.exemplars) == 2 and h.resource["service.name"] == "setup-test"
    (active,) = otlp_receiver.latest("http.server.active_requests")
    assert active.value == 1 and not active.monotonic
    assert active.attributes == {"http.request.method": "GET", "url.scheme": "http"}
    (orders,) = otlp_receiver.latest("orders.placed")
    assert orders.value == 2 and orders.monotonic and orders.resource["service.name"] == "setup-test"


def test_sdk_histograms_named_like_http_durations_get_the_semconv_buckets(telemetry: Telemetry,
                                                                         otlp_receiver: OTLPReceiver) -> None:
    meter = metrics.get_meter("framework")
    meter.create_histogram("http.client.request.duration", unit="s").record(0.01, {"server.address": "x"})
    telemetry.force_flush()
    points = [p for p in otlp_receiver.latest("http.client.request.duration") if p.scope == "framework"]
    assert points and points[0].explicit_bounds == HTTP_DURATION_BUCKETS


def test_second_call_is_safe(otlp_receiver: OTLPReceiver) -> None:
    first = obsbox.configure(service_name="twice", endpoint=otlp_receiver.endpoint, **FAST)  # type: ignore[arg-type]
    again = obsbox.configure(service_name="twice", endpoint=otlp_receiver.endpoint, **FAST)  # type: ignore[arg-type]
    assert again is first
    other = obsbox.configure(service_name="renamed", endpoint=otlp_receiver.endpoint, **FAST)  # type: ignore[arg-type]
    try:
        assert other is not first and not first.enabled and other.enabled
        with trace.get_tracer("t").start_as_current_span("after"):
            pass
        other.force_flush()
        (span,) = otlp_receiver.spans("after")  # exported once: no second pipeline left behind
        assert span.resource["service.name"] == "renamed"
    finally:
        other.shutdown()
        other.shutdown()  # idempotent


def test_shutdown_flushes_and_stops_recording(otlp_receiver: OTLPReceiver) -> None:
    t = obsbox.configure(service_name="stop", endpoint=otlp_receiver.endpoint, console=False,
                         schedule_delay=60.0)
    with trace.get_tracer("t").start_as_current_span("queued"):
        pass
    t.shutdown()
    assert otlp_receiver.spans("queued")
    assert not trace.get_tracer("t").start_span("late").is_recording()


def test_after_shutdown_outgoing_calls_carry_no_unsampled_trace_context(otlp_receiver: OTLPReceiver) -> None:
    # A shut-down pipeline (here one that sampled nothing) must not keep deciding sampling for the services this
    # process calls: outgoing requests carry no traceparent unless one came in.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.headers.get("traceparent"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        t = obsbox.configure(service_name="stopped", endpoint=otlp_receiver.endpoint, console=False,
                             sampler="always_off")
        httpx.get(url)
        assert seen[-1] is not None and seen[-1].endswith("-00")  # while running: the sampler's decision travels
        t.shutdown()
        httpx.get(url)
        assert seen[-1] is None
    finally:
        server.shutdown()
        server.server_close()


def test_disabled_installs_nothing(otlp_receiver: OTLPReceiver) -> None:
    t = obsbox.configure(service_name="off", endpoint=otlp_receiver.endpoint, disabled=True, console=False)
    assert not t.enabled
    with _runtime.current().tracer.start_as_current_span("nothing") as span:
        assert not span.is_recording()
    t.shutdown()
    assert otlp_receiver.spans() == []


def test_grpc_without_the_extra_warns_and_uses_http(monkeypatch: pytest.MonkeyPatch, otlp_receiver: OTLPReceiver,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from obsbox.instrumentation import setup

    monkeypatch.setattr(setup, "grpc_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="grpcless", endpoint=otlp_receiver.endpoint, protocol="grpc", **FAST)  # type: ignore[arg-type]
    try:
        assert "pip install 'obsbox[grpc]'" in caplog.text
        with trace.get_tracer("t").start_as_current_span("via-http"):
            pass
        t.force_flush()
        assert otlp_receiver.spans("via-http")
    finally:
        t.shutdown()


def test_exit_flushes_without_shutdown(otlp_receiver: OTLPReceiver) -> None:
    script = textwrap.dedent(f"""
        import obsbox
        from opentelemetry import trace
        obsbox.configure(service_name="exiting", endpoint="{otlp_receiver.endpoint}", schedule_delay=60.0)
        with trace.get_tracer("t").start_as_current_span("last words"):
            obsbox.logger.info("bye")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, capture_output=True)
    assert otlp_receiver.wait_for(lambda: otlp_receiver.spans("last words"), timeout=5)
    assert [r.body for r in otlp_receiver.logs()] == ["bye"]


def test_capture_helper_for_users() -> None:
    with capture(service_name="captured", console=False) as cap:
        with trace.get_tracer("t").start_as_current_span("seen"):
            obsbox.logger.info("logged")
        assert [s.name for s in cap.spans()] == ["seen"]
        assert [r.body for r in cap.logs()] == ["logged"]


def test_instruments_created_before_configure_work_and_reconfigure_starts_fresh(otlp_receiver: OTLPReceiver) -> None:
    # held by a library since import time, before (and across) configure() calls
    counter = metrics.get_meter("early-lib").create_counter("early.calls", unit="{call}")
    first = obsbox.configure(service_name="fresh-1", endpoint=otlp_receiver.endpoint, **FAST)  # type: ignore[arg-type]
    counter.add(5)
    first.force_flush()
    second = obsbox.configure(service_name="fresh-2", endpoint=otlp_receiver.endpoint, **FAST)  # type: ignore[arg-type]
    try:
        counter.add(1)
        second.force_flush()
        values = {p.resource["service.name"]: p.value for p in otlp_receiver.latest("early.calls")}
        assert values == {"fresh-1": 5, "fresh-2": 1}
    finally:
        second.shutdown()


def test_user_histograms_get_exemplars_from_obsbox_spans(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    histogram = metrics.get_meter("shop").create_histogram("checkout.duration", unit="s")
    with trace.get_tracer("shop").start_as_current_span("checkout") as span:
        histogram.record(0.3, {"step": "pay"})
    with trace.get_tracer("shop").start_as_current_span("unsampled", context=trace.set_span_in_context(
            NonRecordingSpan(SpanContext(0x99, 0x98, True, TraceFlags(0))))):
        histogram.record(0.4, {"step": "ship"})
    telemetry.force_flush()
    points = {p.attributes["step"]: p for p in otlp_receiver.latest("checkout.duration")}
    (exemplar,) = points["pay"].exemplars
    assert exemplar.trace_id == f"{span.get_span_context().trace_id:032x}"
    assert points["ship"].exemplars == ()  # exemplars only from sampled spans
