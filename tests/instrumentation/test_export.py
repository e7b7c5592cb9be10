"""Export under faults: collector down, slow or refusing → bounded queues, counted drops, one warning, one recovery."""

from __future__ import annotations

import gc
import logging
import threading
import time

import pytest
from opentelemetry import metrics, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.trace import SpanKind

import obsbox
from obsbox.instrumentation import _pipeline
from obsbox.instrumentation._encode import encode_span
from obsbox.instrumentation._metrics import Counter
from obsbox.instrumentation._tracer import TracerProvider
from obsbox.instrumentation.asgi import request_attributes
from obsbox.instrumentation.setup import Telemetry
from obsbox.stack.ports import free_port
from obsbox.testing import OTLPReceiver


def _spans(n: int, name: str = "work") -> None:
    tracer = trace.get_tracer("t")
    for _ in range(n):
        tracer.start_span(name).end()


def _obsbox_warnings(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "obsbox" and r.levelno == level]


def _counted(telemetry: Telemetry, signal: str, outcome: str) -> int:
    for rm in telemetry.collect_metrics().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "obsbox.export.items":
                    return int(sum(p.value for p in m.data.data_points  # type: ignore[union-attr]
                                   if p.attributes == {"signal": signal, "export.outcome": outcome}))
    return 0


def test_collector_down_drops_counts_warns_once_and_recovers(caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pipeline, "PROBE_INTERVAL", 0.2)
    port = free_port()  # nothing listens here: connection refused
    with caplog.at_level(logging.INFO, logger="obsbox"):
        t = obsbox.configure(service_name="down", endpoint=f"http://127.0.0.1:{port}", console=False,
                             max_queue_size=100, max_export_batch_size=50, schedule_delay=0.05,
                             metric_export_interval=0.2)
        try:
            assert t.pipeline is not None
            _spans(1000)  # far more than the queue holds: the rest is dropped at once, never waited for
            assert len(t.pipeline.spans.items) <= 100
            for _ in range(6):  # several batches and metric exports over ~1 s of outage
                _spans(30)
                t.force_flush(2.0)
                time.sleep(0.1)
            assert _counted(t, "traces", "dropped") >= 900 and len(t.pipeline.spans.items) <= 100
            assert _counted(t, "traces", "exported") == 0
            warnings = _obsbox_warnings(caplog)
            assert len(warnings) == 1, warnings
            assert f"127.0.0.1:{port}" in warnings[0] and "obsbox.export.items" in warnings[0]

            with OTLPReceiver(port=port) as receiver:  # the collector comes back
                _spans(5, "after recovery")
                receiver.wait_for(lambda: t.force_flush(1.0) and receiver.spans("after recovery"), timeout=10)
                t.force_flush()
                t.force_flush()  # carries the final counts
                counts = {p.attributes["export.outcome"]: p.value for p in receiver.latest("obsbox.export.items")
                          if p.attributes["signal"] == "traces"}
                # every span is accounted for: dropped during the outage, or exported once it answered
                assert counts["dropped"] + counts["exported"] == 1000 + 6 * 30 + 5
                assert counts["exported"] == len(receiver.spans()) >= 5
                recovered = [m for m in _obsbox_warnings(caplog, logging.INFO) if "recovered" in m]
                assert len(recovered) == 1
                assert len(_obsbox_warnings(caplog)) == 1
        finally:
            t.shutdown(timeout=2.0)


def test_slow_collector_never_blocks_the_application(otlp_receiver: OTLPReceiver,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    otlp_receiver.delay = 1.5
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="slow", endpoint=otlp_receiver.endpoint, console=False,
                             export_timeout=0.3, batch_export_timeout=0.5, max_queue_size=200,
                             max_export_batch_size=100, schedule_delay=0.05)
        try:
            assert t.pipeline is not None
            _spans(100)
            t.force_flush(0.2)  # the worker is now stuck in a send that times out
            started = time.monotonic()
            _spans(2000)  # while it is stuck, the application carries on: the queue caps, the rest is dropped
            assert len(t.pipeline.spans.items) <= 200
            assert time.monotonic() - started < 5  # generous: it is appends only, the point is "not blocked"
            assert t.force_flush(5.0)
            assert _counted(t, "traces", "dropped") >= 1800
            warnings = _obsbox_warnings(caplog)
            assert len(warnings) == 1 and "timed out" in warnings[0], warnings
            otlp_receiver.delay = 0
            pipeline = t.pipeline
            otlp_receiver.wait_for(lambda: pipeline.force_flush(1.0) and not pipeline.spans.items)  # the backlog
            _spans(3, "fast again")
            assert otlp_receiver.wait_for(lambda: t.force_flush(1.0) and otlp_receiver.spans("fast again"))
        finally:
            t.shutdown(timeout=2.0)


def test_refusing_collector_is_retried_once_then_dropped(otlp_receiver: OTLPReceiver,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    otlp_receiver.fail_status = 503
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="refused", endpoint=otlp_receiver.endpoint, console=False,
                             schedule_delay=0.05, export_logs=False)
        try:
            _spans(10)
            t.force_flush()
            assert otlp_receiver.rejected == 2  # the batch and its one retry
            assert _counted(t, "traces", "dropped") == 10
            (warning,) = _obsbox_warnings(caplog)
            assert "HTTP 503" in warning
        finally:
            otlp_receiver.fail_status = None
            t.shutdown(timeout=2.0)


def test_export_items_counts_what_was_exported(otlp_receiver: OTLPReceiver) -> None:
    t = obsbox.configure(service_name="counted", endpoint=otlp_receiver.endpoint, console=False,
                         schedule_delay=0.05)
    try:
        _spans(7)
        obsbox.logger.info("one record")
        t.force_flush()
        t.force_flush()  # the second export carries the counts of the first
        points = {(p.attributes["signal"], p.attributes["export.outcome"]): p.value
                  for p in otlp_receiver.latest("obsbox.export.items")}
        assert points[("traces", "exported")] == 7
        assert points[("logs", "exported")] == 1
        assert points[("metrics", "exported")] > 0
        assert ("traces", "dropped") not in points
    finally:
        t.shutdown()


def test_export_items_is_emitted_as_the_catalogue_declares_it(otlp_receiver: OTLPReceiver) -> None:
    from obsbox.instrumentation.catalogue import CATALOGUE
    from obsbox.instrumentation.pull import render

    spec = CATALOGUE["obsbox.export.items"]
    t = obsbox.configure(service_name="catalogued", endpoint=otlp_receiver.endpoint, console=False)
    try:
        _spans(1)
        t.force_flush()
        t.force_flush()
        points = otlp_receiver.latest(spec.name)
        assert points
        for p in points:
            assert (p.kind, p.monotonic, p.unit, p.description) == ("sum", True, spec.unit, spec.description)
            assert set(p.attributes) == set(spec.attributes)
            assert p.attributes["signal"] in {"traces", "metrics", "logs"}
            assert p.attributes["export.outcome"] in {"exported", "dropped"}
        exposition = render(t.collect_metrics())
        assert f"# TYPE {spec.prometheus_name} counter" in exposition
        assert all(label in exposition for label in spec.prometheus_labels)
    finally:
        t.shutdown()


def test_the_warning_never_shows_credentials_of_the_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="secretive", endpoint=f"http://user:s3cret@127.0.0.1:{port}",
                             console=False, headers={"authorization": "Bearer t0ken"})
        try:
            _spans(1)
            t.force_flush(2.0)
        finally:
            t.shutdown(timeout=1.0)
    (warning,) = _obsbox_warnings(caplog)
    assert f"http://127.0.0.1:{port}" in warning
    assert "s3cret" not in caplog.text and "t0ken" not in caplog.text


# --- OTEL_{TRACES,METRICS,LOGS}_EXPORTER and per-signal endpoints ------------------------------------------------
def test_traces_exporter_none_sends_no_spans_but_trace_ids_still_reach_logs_and_exemplars(
        otlp_receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="no-traces", endpoint=otlp_receiver.endpoint, console=False,
                             schedule_delay=0.05)
        try:
            histogram = metrics.get_meter("shop").create_histogram("checkout.duration", unit="s")
            with trace.get_tracer("t").start_as_current_span("checkout") as span:
                obsbox.logger.info("inside the span")
                histogram.record(0.25)
            _spans(20)
            t.force_flush()
            t.force_flush()  # the second metric export carries the counts of the first
            trace_id = f"{span.get_span_context().trace_id:032x}"
            assert span.get_span_context().trace_flags.sampled
            assert [r.trace_id for r in otlp_receiver.logs() if r.body == "inside the span"] == [trace_id]
            # (exemplars ride on the export after the recording; later cumulative exports repeat only the counts)
            exemplars = [e.trace_id for p in otlp_receiver.metrics("checkout.duration") for e in p.exemplars]
            assert exemplars == [trace_id]
            outcomes = {(p.attributes["signal"], p.attributes["export.outcome"])
                        for p in otlp_receiver.latest("obsbox.export.items")}
            assert ("logs", "exported") in outcomes and ("metrics", "exported") in outcomes
            assert not any(signal == "traces" for signal, _ in outcomes)  # not exported, not dropped either
            assert t.pipeline is not None and len(t.pipeline.spans.items) == 0
        finally:
            t.shutdown()
    assert otlp_receiver.trace_requests == []
    assert _obsbox_warnings(caplog) == []


def test_metrics_and_logs_exporter_none_send_only_traces(
        otlp_receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="traces-only", endpoint=otlp_receiver.endpoint, schedule_delay=0.05,
                             metric_export_interval=0.1)
        try:
            obsbox.logger.info("printed, not exported")
            _spans(3, "kept")
            t.force_flush()
            time.sleep(0.3)  # several metric intervals pass: still nothing
            t.force_flush()
        finally:
            t.shutdown()
    assert len(otlp_receiver.spans("kept")) == 3
    assert otlp_receiver.metric_requests == [] and otlp_receiver.log_requests == []
    assert _obsbox_warnings(caplog) == []
    assert "printed, not exported" in capsys.readouterr().err


def test_all_exporters_none_no_connection_no_drops_no_warning_and_pull_still_serves(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    for signal in ("TRACES", "METRICS", "LOGS"):
        monkeypatch.setenv(f"OTEL_{signal}_EXPORTER", "none")
    port = free_port()  # nothing listens: any export attempt would fail and warn
    with caplog.at_level(logging.INFO, logger="obsbox"):
        t = obsbox.configure(service_name="pull-only", endpoint=f"http://127.0.0.1:{port}", console=False,
                             metrics_port=0, schedule_delay=0.05, metric_export_interval=0.1, max_queue_size=10)
        try:
            assert t.pipeline is not None and not t.pipeline.senders
            _spans(100)  # ten times the queue size: nothing is queued, so nothing is dropped
            obsbox.logger.info("console only")
            assert t.force_flush(1.0)
            time.sleep(0.3)
            url = f"http://127.0.0.1:{t.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local test server
                text = response.read().decode()
            assert 'service_name="pull-only"' in text
            assert "obsbox_export_items" not in text
            assert _counted(t, "traces", "dropped") == 0
            assert not t.pipeline._thread.is_alive()  # no signal to export: no export thread at all
        finally:
            t.shutdown(timeout=1.0)
    assert [m for m in (r.getMessage() for r in caplog.records if r.name == "obsbox")
            if "export" in m] == []


def test_per_signal_endpoint_sends_that_signal_to_its_own_receiver_as_is(
        otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    with OTLPReceiver() as traces_receiver:
        # used as is: were /v1/traces appended, the receiver would answer 404 for /v1/traces/v1/traces
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_receiver.endpoint + "/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=traces-team")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
        t = obsbox.configure(service_name="split", console=False, schedule_delay=0.05,
                             headers={"x-tenant": "common"})
        try:
            _spans(4, "routed")
            obsbox.logger.info("to the common endpoint")
            t.force_flush()
            assert t.pipeline is not None and t.pipeline.healthy
        finally:
            t.shutdown()
        assert len(traces_receiver.spans("routed")) == 4
        assert traces_receiver.metric_requests == [] and traces_receiver.log_requests == []
        assert {h.get("x-tenant") for h in traces_receiver.headers} == {"traces-team"}
    assert otlp_receiver.trace_requests == []
    assert [r.body for r in otlp_receiver.logs()] == ["to the common endpoint"]
    assert otlp_receiver.metrics("obsbox.export.items")
    assert {h.get("x-tenant") for h in otlp_receiver.headers} == {"common"}


def test_invalid_exporter_value_warns_once_and_exports_over_otlp(
        otlp_receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="fallback", endpoint=otlp_receiver.endpoint, console=False,
                             schedule_delay=0.05)
        try:
            _spans(2, "still exported")
            t.force_flush()
        finally:
            t.shutdown()
    (warning,) = _obsbox_warnings(caplog)
    assert "OTEL_TRACES_EXPORTER" in warning and "'console'" in warning and "otlp" in warning
    assert len(otlp_receiver.spans("still exported")) == 2


def test_queued_spans_are_encoded_bytes_the_garbage_collector_ignores() -> None:
    # Every collection scans the objects it tracks: span objects waiting for export were scanned again and again
    # (and promoted to the oldest generation) while they waited, under load a large share of a request's cost.
    queue = _pipeline.Queue("traces", max_size=10, batch_size=10, wake=threading.Event(), encode=encode_span)
    tracer = TracerProvider(sink=queue.offer).get_tracer("test")
    scope = {"method": "GET", "path": "/items/1", "query_string": b"q=1", "client": ("127.0.0.1", 5000),
             "http_version": "1.1"}
    shared, others = request_attributes(scope, "http", b"example.com:8080", b"curl/8")
    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes=others) as span:
        span.shared = shared  # the blocks the request path shares between spans, as ServerRequest.begin sets them
        span.set_attribute("http.response.status_code", 200)
    (item,) = queue.items
    gc.collect()
    assert not gc.is_tracked(item)
    message = SpanMessage.FromString(item[1])
    assert message.name == "GET" and message.span_id == span.get_span_context().span_id.to_bytes(8, "big")
    attrs = {kv.key: kv.value for kv in message.attributes}
    assert attrs["server.port"].int_value == 8080 and attrs["url.path"].string_value == "/items/1"
    assert attrs["url.query"].string_value == "q=1" and attrs["http.response.status_code"].int_value == 200


def test_an_item_that_cannot_be_encoded_is_dropped_counted_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(item: object) -> bytes:
        raise ValueError("unencodable")

    class Item:
        scope = b""

    queue = _pipeline.Queue("logs", max_size=10, batch_size=10, wake=threading.Event(), encode=broken)
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        queue.offer(Item())
        queue.offer(Item())
    assert not queue.items and queue.dropped == 2 and queue.failed == 2
    assert len([m for m in _obsbox_warnings(caplog) if "could not encode a logs item" in m]) == 1


class _RecordingSender:
    """A sender keeping the number of spans in each export request, instead of sending it."""

    endpoint = "memory"

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.sent = threading.Event()

    def send(self, signal: str, body: bytes, timeout: float) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        self.sizes.append(sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans))
        self.sent.set()

    def close(self) -> None: ...

    def forget(self) -> None: ...


def _recording_pipeline(sender: _RecordingSender, schedule_delay: float) -> _pipeline.Pipeline:
    return _pipeline.Pipeline(
        senders={"traces": sender}, resource=b"", collect_metrics=lambda: None,
        export_items=Counter("obsbox.export.items", "1", "", monotonic=True), max_queue_size=1000,
        max_export_batch_size=10, schedule_delay=schedule_delay, export_timeout=1.0, batch_export_timeout=1.0,
        metric_export_interval=3600.0,
    )


def test_under_load_spans_go_out_in_full_batches_and_the_rest_on_the_schedule() -> None:
    sender = _RecordingSender()
    sizes = sender.sizes
    pipeline = _recording_pipeline(sender, schedule_delay=30.0)
    try:
        tracer = TracerProvider(sink=pipeline.spans.offer).get_tracer("t")
        for _ in range(25):
            tracer.start_span("work").end()
        assert sender.sent.wait(5)
        deadline = time.monotonic() + 5
        while sum(sizes) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # a trickle batch, if the worker sent one, would have gone out by now
        assert sizes == [10, 10] and len(pipeline.spans.items) == 5  # the rest waits for the schedule
        assert pipeline.force_flush(5)
        assert sizes == [10, 10, 5]
    finally:
        pipeline.shutdown(1)


def test_under_steady_load_the_rest_of_a_batch_still_goes_out_within_the_schedule_delay() -> None:
    # Full batches wake the worker over and over; the items short of a batch must not wait for a lull.
    sender = _RecordingSender()
    sizes = sender.sizes
    pipeline = _recording_pipeline(sender, schedule_delay=0.5)
    try:
        tracer = TracerProvider(sink=pipeline.spans.offer).get_tracer("t")
        for _ in range(5):
            tracer.start_span("first").end()  # the rest: five short of a batch
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and 5 not in sizes and sum(sizes) % 10 == 0:
            for _ in range(10):
                tracer.start_span("burst").end()  # a full batch every 0.1 s keeps waking the worker
            time.sleep(0.1)
        assert sum(sizes) % 10 == 5 or 5 in sizes, sizes  # the five went out although full batches kept coming
    finally:
        pipeline.shutdown(1)
