"""The WSGI middleware on Flask and plain WSGI apps."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, stream_with_context
from flask.testing import FlaskClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from werkzeug.serving import make_server
from werkzeug.test import Client

import obsbox
from obsbox.instrumentation.wsgi import ObsboxWSGIMiddleware
from tests.instrumentation.test_asgi_core import TP, Captured


class Broken(Exception):
    pass


class BufferedClient(FlaskClient):
    """Reads and closes each response body, as a WSGI server does (the request's telemetry ends at close)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def flask_app() -> Flask:
    app = Flask(__name__)
    app.test_client_class = BufferedClient
    seen: list[int] = []
    app.config["seen"] = seen

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        seen.append(trace.get_current_span().get_span_context().span_id)
        return {"item_id": item_id}

    @app.get("/boom")
    def boom() -> str:
        raise Broken("flask boom")

    @app.get("/teapot")
    def teapot() -> tuple[str, int]:
        return "short and stout", 418

    @app.get("/down")
    def down() -> tuple[str, int]:
        return "down", 502

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for i in range(3):
                time.sleep(0.03)
                yield f"{i}\n"

        return Response(stream_with_context(body()))

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    shop = Blueprint("shop", __name__, url_prefix="/shop")

    @shop.post("/carts/<cart_id>/checkout")
    def checkout(cart_id: str) -> str:
        return cart_id

    app.register_blueprint(shop)

    @app.before_request
    def early_answer() -> Any:  # a user hook that answers before routing completes must not hide the route
        from flask import request

        return "early" if request.path == "/items/99" else None

    return app


@pytest.fixture
def app() -> Flask:
    return obsbox.instrument(flask_app())


def test_flask_span_route_and_metrics(capture: Captured, app: Flask) -> None:
    client = app.test_client()
    response = client.get("/items/7?token=abc&x=1", headers={"traceparent": TP, "User-Agent": "probe/2",
                                                             "Authorization": "Bearer s3cr3t"})
    assert response.json == {"item_id": 7}
    (span,) = capture.spans()
    assert span.kind == SpanKind.SERVER and span.name == "GET /items/<int:item_id>"
    attrs = dict(span.attributes or {})
    assert attrs["http.route"] == "/items/<int:item_id>"
    assert attrs["url.path"] == "/items/7" and attrs["url.query"] == "token=REDACTED&x=1"
    assert attrs["http.response.status_code"] == 200 and attrs["user_agent.original"] == "probe/2"
    assert attrs["server.address"] == "localhost" and attrs["network.protocol.version"] == "1.1"
    assert "s3cr3t" not in repr(attrs)
    assert span.parent is not None and format(span.parent.span_id, "016x") == TP[36:52]
    assert span.context is not None and app.config["seen"] == [span.context.span_id]
    ((seconds, mattrs, exemplar),) = capture.server_duration.calls
    assert mattrs == {"http.request.method": "GET", "url.scheme": "http", "http.route": "/items/<int:item_id>",
                      "http.response.status_code": 200}
    assert exemplar == span.context
    assert capture.active_balance() == 0


def test_blueprint_and_early_answer_keep_the_route(capture: Captured, app: Flask) -> None:
    client = app.test_client()
    client.post("/shop/carts/c1/checkout")
    client.get("/items/99")
    assert [s.name for s in capture.spans()] == ["POST /shop/carts/<cart_id>/checkout", "GET /items/<int:item_id>"]


def test_flask_errors(capture: Captured, app: Flask) -> None:
    client = app.test_client()
    assert client.get("/boom").status_code == 500
    assert client.get("/teapot").status_code == 418
    assert client.get("/down").status_code == 502
    assert client.get("/nope").status_code == 404
    boom, teapot, down, nope = capture.spans()
    assert boom.status.status_code == StatusCode.ERROR
    # Flask answers with a 500 itself; its got_request_exception signal tells us which exception it was
    assert (boom.attributes or {})["error.type"] == f"{Broken.__module__}.Broken"
    assert (boom.attributes or {})["http.response.status_code"] == 500
    assert teapot.status.status_code == StatusCode.UNSET and "error.type" not in (teapot.attributes or {})
    assert (down.attributes or {})["error.type"] == "502"
    assert nope.name == "GET" and "http.route" not in (nope.attributes or {})


def test_flask_propagated_exception(capture: Captured, app: Flask) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(Broken):
        app.test_client().get("/boom")
    (span,) = capture.spans()
    assert (span.attributes or {})["error.type"] == f"{Broken.__module__}.Broken"
    assert span.status.status_code == StatusCode.ERROR and capture.active_balance() == 0


def test_flask_streaming_and_exclusions(capture: Captured, app: Flask) -> None:
    client = app.test_client()
    assert client.get("/healthz").text == "ok"
    started = time.perf_counter()
    assert client.get("/stream").text == "0\n1\n2\n"
    elapsed = time.perf_counter() - started
    (span,) = capture.spans()
    assert span.name == "GET /stream"
    assert 0.09 <= capture.server_duration.calls[0][0] <= elapsed


def test_instrumenting_flask_twice_gives_one_span(capture: Captured) -> None:
    app = flask_app()
    assert obsbox.instrument(app) is app and obsbox.instrument(app) is app
    app.test_client().get("/items/1")
    assert len(capture.spans()) == 1


def plain(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain"]


def test_plain_wsgi_app(capture: Captured) -> None:
    wrapped = obsbox.instrument(plain)
    assert isinstance(wrapped, ObsboxWSGIMiddleware)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    assert wrapped(environ, lambda *a: None) == [b"plain"]  # a complete body passes through as it is
    capture.exporter.clear()
    capture.server_duration.calls.clear()
    response = Client(wrapped).get(buffered=True, path="/users/123?api_key=k")
    assert response.get_data() == b"plain"
    (span,) = capture.spans()
    assert span.name == "GET" and (span.attributes or {})["url.query"] == "api_key=REDACTED"
    assert capture.server_duration.calls[0][1] == {"http.request.method": "GET", "url.scheme": "http",
                                                    "http.response.status_code": 200}


def test_plain_wsgi_generator_body_closed_by_server(capture: Captured) -> None:
    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("503 Service Unavailable", [])

        def body() -> Iterator[bytes]:
            try:
                yield b"a"
                yield b"b"
            finally:
                closed.append(True)

        return body()

    response = Client(obsbox.instrument(app)).get("/x", buffered=True)
    assert response.get_data() == b"ab" and closed == [True]
    (span,) = capture.spans()
    assert span.status.status_code == StatusCode.ERROR and (span.attributes or {})["error.type"] == "503"


def _reset_after_first_byte(port: int, path: str) -> None:
    """One client that asks for `path`, reads the first byte of the answer and resets the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        assert client.recv(1) == b"H"
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def test_clients_that_reset_the_connection_still_end_their_requests(capture: Captured) -> None:
    # After the body, werkzeug's server reads what is left of the request and skips close() when that read hits
    # the reset (those requests used to stay in flight for ever, their spans lost); a reset mid-body makes the
    # server stop iterating (that used to be an error, GeneratorExit). Either way each request must end once: one
    # span, one duration, the in-flight count back to zero, and no error for the client's exit.
    app = flask_app()
    obsbox.instrument(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_port
        for _ in range(10):
            _reset_after_first_byte(port, "/items/7")  # answered in two writes: the reset meets the second
            _reset_after_first_byte(port, "/stream")
        deadline = time.monotonic() + 10
        while len(capture.spans()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        spans = capture.spans()
        assert sorted(s.name for s in spans) == ["GET /items/<int:item_id>"] * 10 + ["GET /stream"] * 10
        assert all("error.type" not in (s.attributes or {}) for s in spans)
        assert all(s.status.status_code == StatusCode.UNSET for s in spans)
        assert len(capture.server_duration.calls) == 20 and capture.active_balance() == 0
    finally:
        server.shutdown()
        server.server_close()
