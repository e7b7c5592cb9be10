"""Outgoing HTTP through httpx (sync, async) and requests against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, StatusCode

from obsbox.instrumentation.clients import instrument_http_clients, uninstrument_http_clients
from tests.instrumentation.test_asgi_core import Captured, captured


class Upstream:
    """A real HTTP server answering /status/<code>; it remembers the headers each request arrived with."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                upstream.headers.append({k.lower(): v for k, v in self.headers.items()})
                code = int(self.path.split("/")[2].split("?")[0]) if self.path.startswith("/status/") else 200
                body = b"ok"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def capture() -> Iterator[Captured]:
    assert instrument_http_clients() == ["httpx", "requests"]
    assert instrument_http_clients() == ["httpx", "requests"]  # idempotent: no double wrapping
    try:
        with captured() as cap:
            yield cap
    finally:
        uninstrument_http_clients()


def _check_call(capture: Captured, upstream: Upstream, status: int, method: str = "GET") -> None:
    (span,) = capture.spans(SpanKind.CLIENT)
    assert span.name == method
    attrs = dict(span.attributes or {})
    assert attrs["http.request.method"] == method and attrs["http.response.status_code"] == status
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == upstream.port
    assert attrs["network.protocol.version"] == "1.1"
    # the server received this span as its parent
    assert span.context is not None
    assert upstream.headers[-1]["traceparent"] == (
        f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}")
    assert span.context.trace_flags.sampled
    ((seconds, mattrs, exemplar),) = capture.client_duration.calls
    expected = {"http.request.method": method, "server.address": "127.0.0.1", "server.port": upstream.port,
                "http.response.status_code": status}
    if status >= 400:
        expected["error.type"] = str(status)
        assert span.status.status_code == StatusCode.ERROR and attrs["error.type"] == str(status)
    assert mattrs == expected and exemplar == span.context and seconds > 0


def test_httpx_sync(capture: Captured, upstream: Upstream) -> None:
    with httpx.Client() as client:
        assert client.get(f"{upstream.url}/status/200?token=t0p&q=1").status_code == 200
    _check_call(capture, upstream, 200)
    (span,) = capture.spans()
    assert (span.attributes or {})["url.full"] == f"{upstream.url}/status/200?token=REDACTED&q=1"


def test_httpx_async(capture: Captured, upstream: Upstream) -> None:
    async def call() -> int:
        async with httpx.AsyncClient() as client:
            return (await client.post(f"{upstream.url}/status/503")).status_code

    assert asyncio.run(call()) == 503
    _check_call(capture, upstream, 503, "POST")


def test_requests(capture: Captured, upstream: Upstream) -> None:
    assert requests.get(f"{upstream.url}/status/404", timeout=5).status_code == 404
    _check_call(capture, upstream, 404)


def test_child_of_the_current_span(capture: Captured, upstream: Upstream) -> None:
    from obsbox.instrumentation import _runtime

    with _runtime.current().tracer.start_as_current_span("parent") as parent:
        requests.get(upstream.url, timeout=5)
    (client_span,) = capture.spans(SpanKind.CLIENT)
    assert client_span.parent is not None and client_span.parent.span_id == parent.get_span_context().span_id


def test_connection_failure(capture: Captured) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # closed once we leave: nothing listens there
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{dead_port}/x")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{dead_port}/x", timeout=5)
    first, second = capture.spans(SpanKind.CLIENT)
    assert (first.attributes or {})["error.type"] == "httpx.ConnectError"
    assert (second.attributes or {})["error.type"] == "requests.exceptions.ConnectionError"
    assert first.status.status_code == second.status.status_code == StatusCode.ERROR
    assert [c[1]["error.type"] for c in capture.client_duration.calls] == ["httpx.ConnectError",
                                                                          "requests.exceptions.ConnectionError"]


def test_credentials_in_url_redacted(capture: Captured, upstream: Upstream) -> None:
    requests.get(f"http://user:pa55word@127.0.0.1:{upstream.port}/a?api_key=k3y", timeout=5)
    (span,) = capture.spans()
    assert (span.attributes or {})["url.full"] == f"http://REDACTED:REDACTED@127.0.0.1:{upstream.port}/a?api_key=REDACTED"
    assert "pa55word" not in repr(span.attributes) and "k3y" not in repr(span.attributes)


def test_suppressed_instrumentation_is_left_alone(capture: Captured, upstream: Upstream) -> None:
    token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        requests.get(upstream.url, timeout=5)
        httpx.get(upstream.url)
    finally:
        otel_context.detach(token)
    assert capture.spans() == [] and capture.client_duration.calls == []
    assert all("traceparent" not in h for h in upstream.headers)


def test_uninstrument(upstream: Upstream) -> None:
    with captured() as cap:
        instrument_http_clients()
        uninstrument_http_clients()
        requests.get(upstream.url, timeout=5)
        httpx.get(upstream.url)
        assert cap.spans() == []
    assert requests.adapters.HTTPAdapter.send.__name__ == "send"
    assert not hasattr(requests.adapters.HTTPAdapter.send, "__obsbox_original__")
