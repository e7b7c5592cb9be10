"""The ASGI middleware on Starlette and plain ASGI apps: spans, metrics, errors, routes, exclusions, streaming."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

import obsbox
from obsbox.instrumentation import _runtime, _server
from obsbox.instrumentation.asgi import ObsboxASGIMiddleware
from tests.instrumentation.test_asgi_core import TP, Captured, Recorder, captured

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


class Boom(Exception):
    pass


async def item(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["item_id"]})


async def boom(request: Request) -> Response:
    raise Boom("kaput")


async def unavailable(request: Request) -> Response:
    return PlainTextResponse("later", status_code=503)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0.05)
            yield f"chunk{i}\n".encode()

    return StreamingResponse(chunks())


async def plain_static(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse("static")(scope, receive, send)


def starlette_app() -> Starlette:
    return Starlette(routes=[
        Route("/items/{item_id:int}", item),
        Route("/boom", boom),
        Route("/unavailable", unavailable),
        Route("/health", health),
        Route("/stream", stream),
        Mount("/api", routes=[Route("/users/{user_id}", item)]),
        Mount("/static", app=plain_static),
    ])


@pytest.fixture
def client() -> TestClient:
    return TestClient(obsbox.instrument(starlette_app()), raise_server_exceptions=False)


def test_one_server_span_per_request_with_semconv_attributes(capture: Captured, client: TestClient) -> None:
    response = client.get("/items/42?page=2", headers={"traceparent": TP, "user-agent": "probe/1"})
    assert response.status_code == 200
    (span,) = capture.spans()
    assert span.kind == SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    attrs = dict(span.attributes or {})
    assert attrs == {
        "http.request.method": "GET", "url.scheme": "http", "url.path": "/items/42", "url.query": "page=2",
        "http.route": "/items/{item_id}", "http.response.status_code": 200,
        "server.address": "testserver", "server.port": 80, "client.address": "testclient",
        "user_agent.original": "probe/1", "network.protocol.version": "1.1",
    }
    assert span.status.status_code == StatusCode.UNSET
    # continued the caller's trace
    assert span.parent is not None and span.parent.is_remote
    assert span.context is not None and format(span.context.trace_id, "032x") == TP[3:35]
    assert format(span.parent.span_id, "016x") == TP[36:52]
    # the duration: low-cardinality attributes only, the span as exemplar
    ((seconds, mattrs, exemplar),) = capture.server_duration.calls
    assert mattrs == {"http.request.method": "GET", "url.scheme": "http", "http.route": "/items/{item_id}",
                      "http.response.status_code": 200}
    assert exemplar == span.context and 0 < seconds < 5
    assert capture.server_active.calls[0][1] == {"http.request.method": "GET", "url.scheme": "http"}
    assert [c[0] for c in capture.server_active.calls] == [1, -1]


def test_mounts_prefix_the_route(capture: Captured, client: TestClient) -> None:
    client.get("/api/users/7")
    client.get("/static/css/site.css")
    names = [s.name for s in capture.spans()]
    assert names == ["GET /api/users/{user_id}", "GET /static/{path}"]


def test_unmatched_requests_collapse_to_one_series(capture: Captured, client: TestClient) -> None:
    assert client.get("/no/such/thing").status_code == 404
    assert client.get("/another/404").status_code == 404
    spans = capture.spans()
    assert [s.name for s in spans] == ["GET", "GET"]
    assert all("http.route" not in (s.attributes or {}) for s in spans)
    first, second = (c[1] for c in capture.server_duration.calls)
    assert first == second == {"http.request.method": "GET", "url.scheme": "http", "http.response.status_code": 404}
    # 404 is not a server error
    assert all(s.status.status_code == StatusCode.UNSET for s in spans)


def test_exception_is_an_error_and_propagates_unchanged(capture: Captured) -> None:
    app = obsbox.instrument(starlette_app())
    with pytest.raises(Boom, match="kaput"):
        TestClient(app).get("/boom")
    (span,) = capture.spans()
    assert span.status.status_code == StatusCode.ERROR
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == f"{Boom.__module__}.Boom"
    assert attrs["http.response.status_code"] == 500 and attrs["http.route"] == "/boom"
    assert [e.name for e in span.events] == ["exception"]
    assert capture.server_duration.calls[0][1]["error.type"] == f"{Boom.__module__}.Boom"
    assert capture.active_balance() == 0


def test_5xx_is_an_error_with_the_status_as_error_type(capture: Captured, client: TestClient) -> None:
    assert client.get("/unavailable").status_code == 503
    (span,) = capture.spans()
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "503"
    assert capture.server_duration.calls[0][1]["error.type"] == "503"


def test_health_and_metrics_paths_excluded_by_default(capture: Captured, client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    client.get("/metrics")
    assert capture.spans() == [] and capture.server_duration.calls == [] and capture.server_active.calls == []


def test_excluded_paths_configurable(capture: Captured) -> None:
    client = TestClient(obsbox.instrument(starlette_app(), excluded_paths={"/items/1"}))
    client.get("/items/1")
    client.get("/health")
    assert [s.attributes["url.path"] for s in capture.spans() if s.attributes] == ["/health"]


def test_streaming_response_timed_to_the_end_of_the_body(capture: Captured, client: TestClient) -> None:
    started = time.perf_counter()
    response = client.get("/stream")
    elapsed = time.perf_counter() - started
    assert response.text == "chunk0\nchunk1\nchunk2\n"
    (span,) = capture.spans()
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.15
    seconds = capture.server_duration.calls[0][0]
    assert 0.15 <= seconds <= elapsed


def test_unknown_method_is_other(capture: Captured, client: TestClient) -> None:
    client.request("PURGE", "/items/1")
    (span,) = capture.spans()
    assert span.name == "HTTP /items/{item_id}"
    assert (span.attributes or {})["http.request.method"] == "_OTHER"
    assert (span.attributes or {})["http.request.method_original"] == "PURGE"


def test_secret_headers_and_query_values_never_reach_spans(capture: Captured, client: TestClient) -> None:
    secrets = {"authorization": "Bearer s3cr3t-a", "cookie": "sid=s3cr3t-b", "proxy-authorization": "Basic s3cr3t-c",
               "x-api-key": "s3cr3t-d"}
    client.get("/items/1?password=s3cr3t-e&token=s3cr3t-f&api_key=s3cr3t-g&q=ok", headers=secrets)
    (span,) = capture.spans()
    text = repr(dict(span.attributes or {})) + repr(span.events)
    assert "s3cr3t" not in text
    assert (span.attributes or {})["url.query"] == "password=REDACTED&token=REDACTED&api_key=REDACTED&q=ok"


def test_plain_asgi_app_has_no_route(capture: Captured) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"made"})

    wrapped = obsbox.instrument(app)
    assert isinstance(wrapped, ObsboxASGIMiddleware)
    assert TestClient(wrapped).post("/anything/123").status_code == 201
    (span,) = capture.spans()
    assert span.name == "POST" and "http.route" not in (span.attributes or {})
    assert capture.server_duration.calls[0][1] == {"http.request.method": "POST", "url.scheme": "http",
                                                    "http.response.status_code": 201}


def test_telemetry_failure_never_reaches_the_app() -> None:
    class Broken(Recorder):
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("recorder down")

        def add(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("recorder down")

    with captured() as cap:
        runtime = _runtime.current()
        _runtime.install(_runtime.Runtime(runtime.tracer, Broken(), Broken(), Broken()))
        before = _server.telemetry_errors
        client = TestClient(obsbox.instrument(starlette_app()))
        assert client.get("/items/5").json() == {"id": 5}
        assert _server.telemetry_errors > before
        (span,) = cap.spans()  # the broken recorders cost the metrics, not the span
        assert span.name == "GET /items/{item_id}"
        assert client.get("/items/6").json() == {"id": 6}
        assert [s.name for s in cap.spans()] == ["GET /items/{item_id}"] * 2


def test_failing_tracer_serves_the_request_untraced() -> None:
    class NoTracer:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer down")

    with captured() as cap:
        runtime = _runtime.current()
        _runtime.install(_runtime.Runtime(NoTracer(), runtime.server_duration, runtime.server_active,  # type: ignore[arg-type]
                                          runtime.client_duration))
        client = TestClient(obsbox.instrument(starlette_app()))
        assert client.get("/items/5").json() == {"id": 5}
        with pytest.raises(Boom):
            client.get("/boom")  # the app's own exceptions still propagate
        assert cap.spans() == [] and cap.server_duration.calls == []


def test_span_is_current_inside_the_handler(capture: Captured) -> None:
    from opentelemetry import trace

    seen: list[int] = []

    async def handler(request: Request) -> Response:
        seen.append(trace.get_current_span().get_span_context().span_id)
        return PlainTextResponse("x")

    client = TestClient(obsbox.instrument(Starlette(routes=[Route("/x", handler)])))
    client.get("/x")
    (span,) = capture.spans()
    assert span.context is not None and seen == [span.context.span_id]


def test_websocket_and_lifespan_pass_through(capture: Captured) -> None:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    app = obsbox.instrument(Starlette(routes=[WebSocketRoute("/ws", echo)]))
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    assert capture.spans() == []


def test_request_without_trace_context_starts_a_new_trace(capture: Captured) -> None:
    """A span current in the serving process (e.g. an in-process call) must not become the server span's parent."""
    app = obsbox.instrument(starlette_app())
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/items/1", "raw_path": b"/items/1",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"a")], "http_version": "1.1"}
    with _runtime.current().tracer.start_as_current_span("unrelated"):
        asyncio.run(app(dict(scope), receive, send))
    with _runtime.current().tracer.start_as_current_span("unrelated"):
        asyncio.run(app({**scope, "headers": [(b"traceparent", TP.encode())]}, receive, send))
    root, continued = capture.server_spans()
    assert root.parent is None
    assert continued.parent is not None and format(continued.parent.span_id, "016x") == TP[36:52]
    assert sent[0]["status"] == 200


def test_exclusions_apply_under_a_root_path(capture: Captured) -> None:
    """uvicorn --root-path /api puts the root path in front of scope["path"]; /api/health is still excluded."""
    app = obsbox.instrument(starlette_app())

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    for path in ("/api/health", "/api/items/3"):
        scope = {"type": "http", "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "/api", "headers": [], "http_version": "1.1"}
        asyncio.run(app(scope, receive, send))
    assert [s.name for s in capture.server_spans()] == ["GET /items/{item_id}"]


def test_send_passes_the_servers_awaitable_through_and_ends_after_the_last_chunk_is_sent(capture: Captured) -> None:
    """Messages before the last go straight to the server (its own awaitable, no coroutine of ours in between);
    the request ends only once the server has sent the last body chunk, so a slow last write is timed."""
    handed: list[Any] = []

    class Sent:
        def __await__(self) -> Any:
            return asyncio.sleep(0).__await__()

    def server_send(message: Any) -> Any:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            return asyncio.sleep(0.1)  # a slow last write
        handed.append(Sent())
        return handed[-1]

    returned: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in ({"type": "http.response.start", "status": 200, "headers": []},
                        {"type": "http.response.body", "body": b"a", "more_body": True}):
            returned.append(send(message))
            await returned[-1]
        await send({"type": "http.response.body", "body": b"b"})

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/x", "raw_path": b"/x",
             "query_string": b"", "root_path": "", "headers": [], "http_version": "1.1"}
    asyncio.run(ObsboxASGIMiddleware(app)(scope, receive, server_send))
    assert returned == handed and len(handed) == 2
    (span,) = capture.server_spans()
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200
    assert capture.server_duration.calls[0][0] >= 0.1
