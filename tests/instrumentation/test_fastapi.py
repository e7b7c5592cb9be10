"""FastAPI: route templates through routers and mounts, and exactly one server span / one set of HTTP metrics per
request even though FastAPI (0.16x+) ships telemetry of its own."""

from __future__ import annotations

import time
import warnings
from typing import Any

import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import obsbox
from tests.instrumentation.test_asgi_core import Captured

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def build(app: FastAPI) -> FastAPI:
    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/missing/{name}")
    async def missing(name: str) -> dict[str, str]:
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/boom")
    def boom() -> None:
        raise ZeroDivisionError("sync boom")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> Any:
            for i in range(3):
                time.sleep(0.03)
                yield f"{i}\n"

        return StreamingResponse(body())

    @app.get("/later")
    async def later(tasks: BackgroundTasks) -> PlainTextResponse:
        tasks.add_task(time.sleep, 1.0)
        return PlainTextResponse("queued")

    router = APIRouter(prefix="/orders")

    @router.get("/{order_id}/lines/{line}")
    async def line(order_id: int, line: int) -> dict[str, int]:
        return {"order": order_id, "line": line}

    app.include_router(router, prefix="/v1")
    sub = FastAPI()

    @sub.get("/users/{user_id}")
    async def user(user_id: str) -> dict[str, str]:
        return {"user": user_id}

    app.mount("/admin", sub)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(obsbox.instrument(build(FastAPI())), raise_server_exceptions=False)


def test_route_templates_through_routers_and_mounts(capture: Captured, client: TestClient) -> None:
    assert client.get("/items/3").status_code == 200
    assert client.get("/v1/orders/9/lines/2").json() == {"order": 9, "line": 2}
    assert client.get("/admin/users/ann").status_code == 200
    assert client.post("/items/3").status_code == 405
    assert [s.name for s in capture.server_spans()] == [
        "GET /items/{item_id}", "GET /v1/orders/{order_id}/lines/{line}", "GET /admin/users/{user_id}",
        "POST /items/{item_id}",
    ]
    routes = [c[1].get("http.route") for c in capture.server_duration.calls]
    assert routes == ["/items/{item_id}", "/v1/orders/{order_id}/lines/{line}", "/admin/users/{user_id}",
                      "/items/{item_id}"]


def test_unmatched_404_and_handler_404(capture: Captured, client: TestClient) -> None:
    client.get("/nothing/here")
    client.get("/missing/x")
    unmatched, handled = capture.server_spans()
    assert unmatched.name == "GET" and "http.route" not in (unmatched.attributes or {})
    assert handled.name == "GET /missing/{name}"
    for span in (unmatched, handled):
        assert span.status.status_code == StatusCode.UNSET
        assert (span.attributes or {})["http.response.status_code"] == 404
        assert "error.type" not in (span.attributes or {})


def test_exception_gives_500_error_span(capture: Captured, client: TestClient) -> None:
    assert client.get("/boom").status_code == 500
    (span,) = capture.server_spans()
    assert span.name == "GET /boom" and span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ZeroDivisionError"
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert capture.server_duration.calls[0][1]["error.type"] == "ZeroDivisionError"


def test_streaming_and_background_tasks(capture: Captured, client: TestClient) -> None:
    assert client.get("/stream").text == "0\n1\n2\n"
    assert client.get("/later").text == "queued"
    stream_seconds, later_seconds = (c[0] for c in capture.server_duration.calls)
    assert stream_seconds >= 0.09  # the whole body
    assert later_seconds < 1.0  # ends with the body, before the background task


def _native_providers() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return tracer_provider, exporter, MeterProvider(metric_readers=[reader]), reader


def _metric_names(reader: InMemoryMetricReader) -> list[str]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def test_fastapi_native_telemetry_is_on_without_obsbox() -> None:
    """The control: FastAPI's own telemetry really emits spans and metrics when given providers."""
    tracer_provider, exporter, meter_provider, reader = _native_providers()
    app = build(FastAPI(telemetry={"tracer_provider": tracer_provider, "meter_provider": meter_provider}))
    TestClient(app).get("/items/1")
    names = [s.name for s in exporter.get_finished_spans()]
    assert "GET /items/{item_id}" in names and len(names) > 1  # request span plus operation spans
    assert "http.server.request.duration" in _metric_names(reader)


def test_obsbox_stands_in_for_fastapi_native_telemetry(capture: Captured) -> None:
    tracer_provider, exporter, meter_provider, reader = _native_providers()
    app = build(FastAPI(telemetry={"tracer_provider": tracer_provider, "meter_provider": meter_provider}))
    client = TestClient(obsbox.instrument(app))
    for path in ("/items/1", "/v1/orders/1/lines/1", "/admin/users/x"):
        assert client.get(path).status_code == 200
    assert exporter.get_finished_spans() == ()
    assert "http.server.request.duration" not in _metric_names(reader)
    assert "http.server.active_requests" not in _metric_names(reader)
    spans = capture.spans()
    assert [s.kind for s in spans] == [SpanKind.SERVER] * 3
    assert len(capture.server_duration.calls) == 3


def test_instrumenting_twice_gives_one_span(capture: Captured) -> None:
    app = build(FastAPI())
    assert obsbox.instrument(app) is app
    assert obsbox.instrument(app) is app
    TestClient(app).get("/items/2")
    assert len(capture.spans()) == 1 and len(capture.server_duration.calls) == 1


def test_instrument_after_the_app_started(capture: Captured) -> None:
    app = build(FastAPI())
    with TestClient(app) as client:
        client.get("/items/1")  # builds the middleware stack
        obsbox.instrument(app)
        client.get("/items/2")
    assert [s.name for s in capture.spans()] == ["GET /items/{item_id}"]


def test_configured_pipeline_exports_one_server_span_and_one_series_per_request() -> None:
    """configure() sets global providers, which switch FastAPI's own telemetry on; obsbox must still be the only
    source of the request's SERVER span and HTTP metrics, as a real OTLP receiver sees them."""
    from obsbox.testing import capture as pipeline_capture

    with pipeline_capture(service_name="fastapi-single", metric_export_interval=60.0) as cap:
        app = build(FastAPI())
        client = TestClient(obsbox.instrument(app))
        for _ in range(3):
            assert client.get("/items/5").status_code == 200
        assert client.get("/v1/orders/2/lines/3").status_code == 200
        cap.flush()
        spans = cap.receiver.wait_for(lambda: [s for s in cap.spans() if s.kind == 2] or None)
        assert sorted(s.name for s in spans) == ["GET /items/{item_id}"] * 3 + ["GET /v1/orders/{order_id}/lines/{line}"]
        assert all(s.scope != "fastapi" for s in cap.spans())  # no spans from FastAPI's native telemetry
        points = cap.receiver.wait_for(lambda: cap.latest("http.server.request.duration") or None)
        by_route = {p.attributes["http.route"]: p for p in points}
        assert len(points) == 2 and by_route["/items/{item_id}"].count == 3
        assert by_route["/v1/orders/{order_id}/lines/{line}"].count == 1
        assert {p.scope for p in points} != {"fastapi"}
        assert len([p for p in cap.metrics("http.server.request.duration") if p.scope == "fastapi"]) == 0


def test_fastapi_mounted_in_instrumented_starlette_app(capture: Captured) -> None:
    """A FastAPI app inside a Starlette app: obsbox at the top is the only telemetry, with the full route."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    tracer_provider, exporter, meter_provider, reader = _native_providers()
    inner = build(FastAPI(telemetry={"tracer_provider": tracer_provider, "meter_provider": meter_provider}))
    outer = obsbox.instrument(Starlette(routes=[Mount("/shop", app=inner)]))
    assert TestClient(outer).get("/shop/items/4").status_code == 200
    assert exporter.get_finished_spans() == ()
    assert "http.server.request.duration" not in _metric_names(reader)
    assert [s.name for s in capture.server_spans()] == ["GET /shop/items/{item_id}"]
