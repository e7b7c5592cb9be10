"""Django: instrumented WSGI and ASGI handlers, and the MIDDLEWARE class, with Django's route templates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import django
from django.conf import settings
from opentelemetry.trace import SpanKind, StatusCode

import obsbox
from tests.instrumentation.test_asgi_core import TP, Captured

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.urls import include, path, re_path  # noqa: E402


class Crash(Exception):
    pass


def item(request: HttpRequest, pk: int) -> HttpResponse:
    return JsonResponse({"pk": pk})


def order(request: HttpRequest, ref: str) -> HttpResponse:
    return JsonResponse({"ref": ref})


def crash(request: HttpRequest) -> HttpResponse:
    raise Crash("django boom")


def stream(request: HttpRequest) -> HttpResponse:
    def body() -> Iterator[bytes]:
        for i in range(3):
            time.sleep(0.03)
            yield f"{i}\n".encode()

    return StreamingHttpResponse(body())


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


api = [path("orders/<slug:ref>/", order)]
urlpatterns = [
    path("items/<int:pk>/", item),
    path("crash/", crash),
    path("stream/", stream),
    path("healthz", health),
    path("api/v2/", include(api)),
    re_path(r"^legacy/(?P<pk>[0-9]+)$", item),
]


def wsgi_get(app: Any, path_info: str, query: str = "", **headers: str) -> tuple[str, bytes]:
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path_info, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.9",
        "wsgi.url_scheme": "http", "wsgi.input": __import__("io").BytesIO(b""), "wsgi.errors": __import__("sys").stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False, "HTTP_HOST": "shop.local:8000",
    }
    environ.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    status: list[str] = []
    body = app(environ, lambda s, h, exc_info=None: status.append(s))
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close:
            close()
    return status[0], data


def test_wsgi_handler_routes(capture: Captured) -> None:
    app = obsbox.instrument(WSGIHandler())
    assert wsgi_get(app, "/items/5/", "secret=x", traceparent=TP)[0].startswith("200")
    assert wsgi_get(app, "/api/v2/orders/abc/")[0].startswith("200")
    assert wsgi_get(app, "/legacy/12")[0].startswith("200")
    assert wsgi_get(app, "/nowhere")[0].startswith("404")
    assert wsgi_get(app, "/healthz")[0].startswith("200")
    names = [s.name for s in capture.spans()]
    assert names == ["GET /items/<int:pk>/", "GET /api/v2/orders/<slug:ref>/", "GET /^legacy/(?P<pk>[0-9]+)$", "GET"]
    first = capture.spans()[0]
    attrs = dict(first.attributes or {})
    assert attrs["server.address"] == "shop.local" and attrs["server.port"] == 8000
    assert attrs["url.query"] == "secret=REDACTED" and attrs["client.address"] == "10.0.0.9"
    assert first.parent is not None and format(first.parent.span_id, "016x") == TP[36:52]
    assert capture.server_duration.calls[0][1]["http.route"] == "/items/<int:pk>/"


def test_wsgi_handler_errors_and_streaming(capture: Captured) -> None:
    app = obsbox.instrument(WSGIHandler())
    assert wsgi_get(app, "/crash/")[0].startswith("500")
    assert wsgi_get(app, "/stream/")[1] == b"0\n1\n2\n"
    crashed, streamed = capture.spans()
    assert crashed.status.status_code == StatusCode.ERROR
    assert (crashed.attributes or {})["error.type"] == f"{Crash.__module__}.Crash"
    assert (crashed.attributes or {})["http.response.status_code"] == 500
    assert streamed.name == "GET /stream/" and capture.server_duration.calls[1][0] >= 0.09


def asgi_get(app: Any, path_info: str) -> int:
    messages: list[dict[str, Any]] = []
    sent_body: list[bool] = []

    async def receive() -> dict[str, Any]:
        if not sent_body:
            sent_body.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected; Django cancels this once it has answered
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path_info, "raw_path": path_info.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"localhost:9000")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9000)}
    asyncio.run(app(scope, receive, send))
    return int(messages[0]["status"])


def test_asgi_handler_routes(capture: Captured) -> None:
    app = obsbox.instrument(ASGIHandler())
    assert asgi_get(app, "/items/8/") == 200
    assert asgi_get(app, "/crash/") == 500
    assert asgi_get(app, "/gone") == 404
    ok, crashed, gone = capture.spans()
    assert ok.name == "GET /items/<int:pk>/" and ok.kind == SpanKind.SERVER
    assert crashed.name == "GET /crash/" and (crashed.attributes or {})["error.type"] == f"{Crash.__module__}.Crash"
    assert gone.name == "GET" and gone.status.status_code == StatusCode.UNSET


def test_handlers_are_instrumented_in_place(capture: Captured) -> None:
    wsgi, asgi = WSGIHandler(), ASGIHandler()
    assert obsbox.instrument(wsgi) is wsgi and obsbox.instrument(asgi) is asgi  # the result need not be used
    assert obsbox.instrument(wsgi) is wsgi  # twice: still one span per request
    assert isinstance(wsgi, WSGIHandler) and isinstance(asgi, ASGIHandler)
    assert wsgi_get(wsgi, "/items/3/")[0].startswith("200")
    assert asgi_get(asgi, "/items/4/") == 200
    assert [s.name for s in capture.spans()] == ["GET /items/<int:pk>/", "GET /items/<int:pk>/"]
    untouched = WSGIHandler()
    assert wsgi_get(untouched, "/items/5/")[0].startswith("200") and len(capture.spans()) == 2


MIDDLEWARE = ["obsbox.instrumentation.frameworks.ObsboxDjangoMiddleware"]


@override_settings(MIDDLEWARE=MIDDLEWARE)
def test_middleware_class_alone(capture: Captured) -> None:
    app = WSGIHandler()  # loads MIDDLEWARE
    assert wsgi_get(app, "/items/3/")[0].startswith("200")
    assert wsgi_get(app, "/crash/")[0].startswith("500")
    assert wsgi_get(app, "/healthz")[0].startswith("200")
    ok, crashed = capture.spans()
    assert ok.name == "GET /items/<int:pk>/" and (ok.attributes or {})["http.response.status_code"] == 200
    assert (crashed.attributes or {})["error.type"] == f"{Crash.__module__}.Crash"
    assert capture.active_balance() == 0


@override_settings(MIDDLEWARE=MIDDLEWARE)
def test_middleware_class_async(capture: Captured) -> None:
    assert asgi_get(ASGIHandler(), "/items/4/") == 200
    (span,) = capture.spans()
    assert span.name == "GET /items/<int:pk>/"


@override_settings(MIDDLEWARE=MIDDLEWARE)
def test_middleware_and_instrumented_handler_give_one_span(capture: Captured) -> None:
    wsgi_get(obsbox.instrument(WSGIHandler()), "/items/1/")
    asgi_get(obsbox.instrument(ASGIHandler()), "/items/2/")
    assert [s.name for s in capture.spans()] == ["GET /items/<int:pk>/"] * 2
    assert len(capture.server_duration.calls) == 2


@override_settings(MIDDLEWARE=MIDDLEWARE, OBSBOX_EXCLUDED_PATHS=["/items/3/"])
def test_middleware_class_exclusions_and_streaming(capture: Captured) -> None:
    app = WSGIHandler()
    wsgi_get(app, "/items/3/")
    wsgi_get(app, "/healthz")  # the setting replaces the defaults
    started = time.perf_counter()
    assert wsgi_get(app, "/stream/")[1] == b"0\n1\n2\n"
    elapsed = time.perf_counter() - started
    assert [s.name for s in capture.spans()] == ["GET /healthz", "GET /stream/"]
    assert 0.09 <= capture.server_duration.calls[1][0] <= elapsed  # timed to the end of the streamed body


def wsgi_first_chunk(app: Any, path_info: str) -> bytes:
    """A server whose client went away after the first chunk: it stops iterating and closes the body."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path_info, "SCRIPT_NAME": "", "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": __import__("io").BytesIO(b"")}
    body = app(environ, lambda s, h, exc_info=None: None)
    chunks = iter(body)
    first: bytes = next(chunks)
    del chunks
    body.close()
    return first


def test_a_stream_cut_short_by_the_server_ends_without_an_error(capture: Captured) -> None:
    assert wsgi_first_chunk(obsbox.instrument(WSGIHandler()), "/stream/") == b"0\n"
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        assert wsgi_first_chunk(WSGIHandler(), "/stream/") == b"0\n"
    spans = capture.spans()
    assert [s.name for s in spans] == ["GET /stream/"] * 2
    assert all("error.type" not in (s.attributes or {}) and s.status.status_code == StatusCode.UNSET for s in spans)
    assert len(capture.server_duration.calls) == 2 and capture.active_balance() == 0
