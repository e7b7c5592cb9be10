"""The OpenTelemetry SDK's extension points on obsbox's providers: span processors (a second OTLP destination, the
console exporter, in-memory exporters, on_start hooks) and metric readers, through a real app under uvicorn."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import obsbox
from obsbox.instrumentation._tracer import Tracer
from obsbox.instrumentation.setup import Telemetry, current_telemetry
from obsbox.testing import OTLPReceiver
from tests.instrumentation._served import get, served


def _app() -> FastAPI:
    app = FastAPI()
    tracer = trace.get_tracer("shop.db")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        with tracer.start_as_current_span("db.query") as span:
            span.add_event("cache-miss", {"key": f"item:{item_id}"})
            if item_id == 0:
                raise ValueError("no item 0")
        return {"item_id": item_id}

    return obsbox.instrument(app)


@pytest.fixture
def second_receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture
def configured(otlp_receiver: OTLPReceiver) -> Iterator[list[Telemetry]]:
    made: list[Telemetry] = []
    yield made
    for telemetry in made:
        telemetry.shutdown()


def _configure(made: list[Telemetry], receiver: OTLPReceiver, **kwargs: Any) -> Telemetry:
    kwargs.setdefault("service_name", "seams")
    telemetry = obsbox.configure(endpoint=receiver.endpoint, console=False, schedule_delay=0.1, **kwargs)
    made.append(telemetry)
    return telemetry


def test_sdk_batch_processor_with_in_memory_exporter_gets_readable_spans(
        otlp_receiver: OTLPReceiver, configured: list[Telemetry]) -> None:
    exporter = InMemorySpanExporter()
    telemetry = _configure(configured, otlp_receiver, span_processors=[BatchSpanProcessor(exporter)])
    with served(_app()) as base:
        assert get(base + "/items/7") == 200
        assert get(base + "/items/0") == 500
    telemetry.force_flush()
    spans = exporter.get_finished_spans()
    assert all(isinstance(s, ReadableSpan) for s in spans)
    by_name: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    ok, failed = by_name["GET /items/{item_id}"]
    assert ok.kind is SpanKind.SERVER and ok.attributes is not None
    assert ok.attributes["http.route"] == "/items/{item_id}" and ok.attributes["http.response.status_code"] == 200
    assert ok.attributes["url.path"] == "/items/7" and ok.attributes["http.request.method"] == "GET"
    assert failed.status.status_code is StatusCode.ERROR and failed.attributes is not None
    assert failed.attributes["error.type"] == "ValueError" and [e.name for e in failed.events] == ["exception"]
    db = by_name["db.query"]
    assert db[0].parent is not None and db[0].parent.span_id == ok.context.span_id
    assert db[0].context.trace_id == ok.context.trace_id
    assert db[0].instrumentation_scope is not None and db[0].instrumentation_scope.name == "shop.db"
    assert [(e.name, dict(e.attributes or {})) for e in db[0].events] == [("cache-miss", {"key": "item:7"})]
    assert ok.resource.attributes["service.name"] == "seams"
    assert ok.end_time is not None and ok.start_time is not None and ok.end_time > ok.start_time
    # obsbox's own export carried the same spans
    received = otlp_receiver.wait_for(lambda: len(otlp_receiver.spans()) == 4 and otlp_receiver.spans())
    assert {(r.trace_id, r.span_id) for r in received} == {
        (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans}


def test_a_second_otlp_destination_receives_what_obsbox_exports(
        otlp_receiver: OTLPReceiver, second_receiver: OTLPReceiver, configured: list[Telemetry]) -> None:
    second = BatchSpanProcessor(OTLPSpanExporter(endpoint=second_receiver.endpoint + "/v1/traces"))
    telemetry = _configure(configured, otlp_receiver, span_processors=[second])
    with served(_app()) as base:
        for item in (1, 2, 0):
            get(base + f"/items/{item}")
    telemetry.force_flush()
    first = otlp_receiver.wait_for(lambda: len(otlp_receiver.spans()) == 6 and otlp_receiver.spans())
    other = second_receiver.wait_for(lambda: len(second_receiver.spans()) == 6 and second_receiver.spans())

    def comparable(records: list[Any]) -> set[tuple[Any, ...]]:
        return {(r.trace_id, r.span_id, r.parent_span_id, r.name, r.kind, r.start_time_unix_nano,
                 r.end_time_unix_nano, repr(sorted(r.attributes.items())), r.status_code, r.scope,
                 r.resource["service.name"], r.resource["service.instance.id"]) for r in records}

    assert comparable(first) == comparable(other)


def test_console_exporter_prints_every_span(otlp_receiver: OTLPReceiver, configured: list[Telemetry]) -> None:
    out = io.StringIO()
    _configure(configured, otlp_receiver, span_processors=[SimpleSpanProcessor(ConsoleSpanExporter(out=out))])
    with served(_app()) as base:
        get(base + "/items/3")
    printed = [json.loads(chunk) for chunk in out.getvalue().replace("}\n{", "}\x00{").split("\x00")]
    server = next(s for s in printed if s["name"] == "GET /items/{item_id}")
    assert server["kind"] == "SpanKind.SERVER" and server["attributes"]["http.route"] == "/items/{item_id}"
    assert server["resource"]["attributes"]["service.name"] == "seams"
    child = next(s for s in printed if s["name"] == "db.query")
    assert child["parent_id"] == server["context"]["span_id"]


class Recording(SpanProcessor):
    """An SDK processor that tags spans as they start and notes its lifecycle."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []
        self.shut_down = 0

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        span.set_attribute("tenant", "acme")

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)

    def shutdown(self) -> None:
        self.shut_down += 1


def test_add_span_processor_on_the_global_provider_with_on_start(
        otlp_receiver: OTLPReceiver, configured: list[Telemetry]) -> None:
    telemetry = _configure(configured, otlp_receiver)
    recording = Recording()
    trace.get_tracer_provider().add_span_processor(recording)  # type: ignore[attr-defined]
    with served(_app()) as base:
        get(base + "/items/5")
    telemetry.force_flush()
    assert sorted(s.name for s in recording.ended) == ["GET /items/{item_id}", "db.query"]
    # on_start ran as each span started: its attribute reached every exporter, obsbox's OTLP one included
    assert all((s.attributes or {}).get("tenant") == "acme" for s in recording.ended)
    received = otlp_receiver.wait_for(lambda: len(otlp_receiver.spans()) == 2 and otlp_receiver.spans())
    assert {r.attributes.get("tenant") for r in received} == {"acme"}
    # the processor belongs to the configuration: shut down with it, gone from the next one
    telemetry.shutdown()
    assert recording.shut_down == 1
    _configure(configured, otlp_receiver, service_name="next")
    with trace.get_tracer("t").start_as_current_span("after"):
        pass
    assert "after" not in [s.name for s in recording.ended]


class Broken(SpanProcessor):
    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        raise RuntimeError("start broke")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("end broke")


def test_a_failing_processor_never_reaches_the_application(
        otlp_receiver: OTLPReceiver, configured: list[Telemetry], caplog: pytest.LogCaptureFixture) -> None:
    exporter = InMemorySpanExporter()
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        telemetry = _configure(configured, otlp_receiver,
                               span_processors=[Broken(), SimpleSpanProcessor(exporter)])
        with served(_app()) as base:
            assert [get(base + f"/items/{i}") for i in (1, 2)] == [200, 200]
    telemetry.force_flush()
    assert len(exporter.get_finished_spans()) == 4  # the processor after the broken one still got every span
    assert len(otlp_receiver.wait_for(lambda: len(otlp_receiver.spans()) == 4 and otlp_receiver.spans())) == 4
    warnings = [r for r in caplog.records if "span processor Broken failed" in r.getMessage()]
    assert len(warnings) == 1


def test_without_user_processors_spans_go_straight_to_the_otlp_queue(
        otlp_receiver: OTLPReceiver, configured: list[Telemetry]) -> None:
    """The default path pays nothing for the seam: the span's sink is the queue's own method, no adapter, and the
    tracer starts spans with the class's `start`; adding a processor changes that only while it is there."""
    telemetry = _configure(configured, otlp_receiver)
    provider: Any = trace.get_tracer_provider()
    tracer = telemetry.tracer
    assert telemetry.pipeline is not None
    assert provider.sink == telemetry.pipeline.spans.offer and type(tracer) is Tracer
    provider.add_span_processor(Recording())
    assert provider.sink != telemetry.pipeline.spans.offer and type(tracer) is not Tracer
    again = _configure(configured, otlp_receiver, service_name="again")
    assert again.pipeline is not None
    assert provider.sink == again.pipeline.spans.offer and type(again.tracer) is Tracer


def _names(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_metric_readers_collect_obsbox_http_metrics_and_sdk_instruments(
        otlp_receiver: OTLPReceiver, second_receiver: OTLPReceiver, configured: list[Telemetry]) -> None:
    in_memory = InMemoryMetricReader()
    periodic = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=second_receiver.endpoint + "/v1/metrics"), export_interval_millis=60_000)
    telemetry = _configure(configured, otlp_receiver, metric_readers=[in_memory, periodic])
    metrics.get_meter("shop").create_counter("orders.placed").add(2, {"region": "eu"})
    with served(_app()) as base:
        get(base + "/items/4")
        get(base + "/items/0")
    names = _names(in_memory)
    duration = names["http.server.request.duration"]
    routes = {(p.attributes["http.route"], p.attributes["http.response.status_code"], p.count)
              for p in duration.data.data_points}
    assert routes == {("/items/{item_id}", 200, 1), ("/items/{item_id}", 500, 1)}
    assert [p.value for p in names["orders.placed"].data.data_points] == [2]
    # a reader with an SDK exporter sends the same series to its own destination
    telemetry.force_flush()
    points = second_receiver.wait_for(lambda: second_receiver.latest("http.server.request.duration"))
    assert {(p.attributes["http.route"], p.attributes["http.response.status_code"]) for p in points} == {
        ("/items/{item_id}", 200), ("/items/{item_id}", 500)}
    assert all(p.resource["service.name"] == "seams" for p in points)
    # readers belong to the configuration
    telemetry.shutdown()
    assert current_telemetry() is None
    assert periodic._shutdown


def test_links_sampling_and_on_start_as_documented(otlp_receiver: OTLPReceiver, configured: list[Telemetry]) -> None:
    exporter = InMemorySpanExporter()
    telemetry = _configure(configured, otlp_receiver, span_processors=[SimpleSpanProcessor(exporter)])
    # SimpleSpanProcessor's on_start does nothing: spans start on the plain tracer's path
    assert type(telemetry.tracer) is Tracer
    tracer = trace.get_tracer("linker", "1.2")
    with tracer.start_as_current_span("first") as first:
        pass
    with tracer.start_as_current_span("second", links=[trace.Link(first.get_span_context(), {"why": "retry"})]):
        pass
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    (link,) = by_name["second"].links
    assert link.context.span_id == first.get_span_context().span_id and dict(link.attributes or {}) == {
        "why": "retry"}
    scope = by_name["second"].instrumentation_scope
    assert scope is not None and (scope.name, scope.version) == ("linker", "1.2")
    # spans the sampler drops reach no processor
    exporter.clear()
    _configure(configured, otlp_receiver, sampler="always_off", span_processors=[SimpleSpanProcessor(exporter)])
    with trace.get_tracer("t").start_as_current_span("dropped"):
        pass
    assert exporter.get_finished_spans() == ()


def test_a_delta_reader_is_warned_and_gets_cumulative_data(
        otlp_receiver: OTLPReceiver, configured: list[Telemetry], caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        _configure(configured, otlp_receiver, metric_readers=[reader])
    assert "prefers delta temporality" in caplog.text
    counter = metrics.get_meter("shop").create_counter("orders.placed")
    counter.add(2)
    assert _names(reader)["orders.placed"].data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    counter.add(3)
    assert [p.value for p in _names(reader)["orders.placed"].data.data_points] == [5]  # the total, not 3
