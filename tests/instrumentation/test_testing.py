"""obsbox.testing.OTLPReceiver against the official OpenTelemetry OTLP/HTTP exporters (protobuf, plain and gzip)."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from importlib.metadata import entry_points

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from obsbox.testing import OTLPReceiver

RESOURCE = Resource.create({"service.name": "receiver-test"})


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_receives_spans_from_the_official_exporter(otlp_receiver: OTLPReceiver, compression: Compression) -> None:
    provider = TracerProvider(resource=RESOURCE)
    exporter = OTLPSpanExporter(endpoint=otlp_receiver.endpoint + "/v1/traces", compression=compression)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test-scope")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/items/{id}")
        with tracer.start_as_current_span("child") as child:
            child.add_event("cache-miss", {"key": "k"})
    provider.shutdown()

    spans = otlp_receiver.wait_for(lambda: len(otlp_receiver.spans()) == 2 and otlp_receiver.spans())
    by_name = {s.name: s for s in spans}
    p, c = by_name["parent"], by_name["child"]
    assert p.kind == 2 and c.kind == 1
    assert p.trace_id == format(parent.get_span_context().trace_id, "032x")
    assert c.parent_span_id == p.span_id == format(parent.get_span_context().span_id, "016x")
    assert p.attributes == {"http.route": "/items/{id}"}
    assert c.events == [("cache-miss", {"key": "k"})]
    assert p.resource["service.name"] == "receiver-test"
    assert p.scope == "test-scope"
    assert p.end_time_unix_nano >= p.start_time_unix_nano > 0
    if compression is Compression.Gzip:
        assert all(h.get("content-encoding") == "gzip" for h in otlp_receiver.headers)


def test_receives_metrics_with_exemplars(otlp_receiver: OTLPReceiver) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_receiver.endpoint + "/v1/metrics"), export_interval_millis=60_000
    )
    meter_provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    tracer_provider = TracerProvider(resource=RESOURCE)
    meter = meter_provider.get_meter("m")
    hist = meter.create_histogram("http.server.request.duration", unit="s")
    counter = meter.create_counter("jobs", unit="{job}")
    with tracer_provider.get_tracer("t").start_as_current_span("req") as span:
        hist.record(0.02, {"http.route": "/a"})
    counter.add(3, {"kind": "x"})
    meter_provider.force_flush()  # one export: the SDK keeps exemplars for one collection only
    (h,) = otlp_receiver.wait_for(lambda: otlp_receiver.latest("http.server.request.duration"))
    meter_provider.shutdown()
    assert h.kind == "histogram" and h.unit == "s" and h.count == 1 and h.sum == pytest.approx(0.02)
    assert h.attributes == {"http.route": "/a"}
    assert sum(h.bucket_counts) == 1 and len(h.bucket_counts) == len(h.explicit_bounds) + 1
    assert h.temporality == 2
    (ex,) = h.exemplars
    assert ex.trace_id == format(span.get_span_context().trace_id, "032x")
    assert ex.span_id == format(span.get_span_context().span_id, "016x")
    (c,) = otlp_receiver.latest("jobs")
    assert c.kind == "sum" and c.monotonic and c.value == 3 and c.attributes == {"kind": "x"}
    assert c.resource["service.name"] == "receiver-test"


def test_receives_logs(otlp_receiver: OTLPReceiver) -> None:
    from opentelemetry._logs import SeverityNumber

    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=otlp_receiver.endpoint + "/v1/logs"))
    )
    provider.get_logger("log-scope").emit(
        body="hello", severity_number=SeverityNumber.WARN, severity_text="WARNING", attributes={"order_id": 42}
    )
    provider.shutdown()
    (record,) = otlp_receiver.wait_for(otlp_receiver.logs)
    assert record.body == "hello"
    assert record.severity_number == 13 and record.severity_text == "WARNING"
    assert record.attributes == {"order_id": 42}
    assert record.resource["service.name"] == "receiver-test" and record.scope == "log-scope"


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_rejects_garbage_and_unknown_paths(otlp_receiver: OTLPReceiver) -> None:
    ct = {"Content-Type": "application/x-protobuf"}
    assert _post(otlp_receiver.endpoint + "/v1/traces", b"\xff\xff\xff", ct) == 400
    assert _post(otlp_receiver.endpoint + "/v1/nope", b"", ct) == 404
    assert _post(otlp_receiver.endpoint + "/v1/logs", b"not gzip", {**ct, "Content-Encoding": "gzip"}) == 400
    assert _post(otlp_receiver.endpoint + "/v1/logs", gzip.compress(b""), {**ct, "Content-Encoding": "gzip"}) == 200
    assert otlp_receiver.rejected == 2


def test_can_play_a_failing_collector(otlp_receiver: OTLPReceiver) -> None:
    otlp_receiver.fail_status = 503
    assert _post(otlp_receiver.endpoint + "/v1/traces", b"", {}) == 503
    otlp_receiver.fail_status = None
    assert _post(otlp_receiver.endpoint + "/v1/traces", b"", {}) == 200
    assert otlp_receiver.rejected == 1 and len(otlp_receiver.trace_requests) == 1


def test_wait_for_times_out_with_a_summary(otlp_receiver: OTLPReceiver) -> None:
    with pytest.raises(TimeoutError, match="0 spans"):
        otlp_receiver.wait_for(lambda r: r.spans(), timeout=0.2)


def test_pytest_plugin_is_registered() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("obsbox") == "obsbox.testing"


def test_in_memory_capture_needs_no_receiver_and_reads_as_the_receiver_does() -> None:
    """capture(in_memory=True): spans through the span processor protocol, logs through the logger, metrics
    collected on read — encoded by obsbox's exporter code and read back with the same records as a receiver's."""
    from fastapi import FastAPI

    import obsbox
    from obsbox.testing import InMemoryReceiver, capture
    from tests.instrumentation._served import get, served

    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        obsbox.logger.info("order read", order_id=order_id)
        return {"order_id": order_id}

    with capture(in_memory=True, service_name="memory", console=False) as cap:
        assert isinstance(cap.receiver, InMemoryReceiver)
        assert cap.telemetry.pipeline is not None and not cap.telemetry.pipeline.senders  # nothing sent anywhere
        with served(obsbox.instrument(app)) as base:
            assert get(base + "/orders/42") == 200
        (span,) = cap.spans("GET /orders/{order_id}")
        assert span.kind == 2 and span.attributes["http.route"] == "/orders/{order_id}"
        assert span.resource["service.name"] == "memory"
        (log,) = [r for r in cap.logs() if r.body == "order read"]
        assert (log.trace_id, log.span_id) == (span.trace_id, span.span_id)
        assert log.attributes["order_id"] == 42
        (point,) = cap.latest("http.server.request.duration")
        assert point.attributes["http.route"] == "/orders/{order_id}" and point.count == 1
        assert point.exemplars[0].trace_id == span.trace_id
        cap.clear()
        assert cap.spans() == [] and cap.logs() == []
