"""Three small real applications (tests/apps: a Django project, a Flask package with an app factory, a FastAPI
service in a package), each served as its users serve it (`manage.py runserver`, `uvicorn bookshelf.asgi:application`,
`flask --app flaskr run`, `uvicorn inventory.main:app`) with the README's two lines, exporting to a real OTLP
receiver.

Span names and `http.route` follow the HTTP semantic conventions (docs/http/http-spans.md, "Name"; the
`http.route` attribute): `{method} {http.route}` when the framework matched a route — also when the handler then
answered 404, or the route exists but not for this method (405) — and just `{method}` with no `http.route` when
nothing matched, since the route "MUST NOT be populated when ... not supported" and "the URI path can NOT substitute
it". Django's root route `path("")` is "/".
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from obsbox.testing import LogRecord, OTLPReceiver, SpanRecord
from tests._apps import APPS, app_env, get, request, serve
from tests._processes import free_port

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class App:
    name: str
    command: list[str]
    found: tuple[str, str]        # a path a route serves, and its template
    missing: str                  # a path a route serves, whose handler answers 404
    crash: str                    # a path whose handler raises
    logs: tuple[str, str, str]    # the handler's stdlib log: its message, a plain field, a secret field

    def argv(self, port: int) -> list[str]:
        return [a.replace("{port}", str(port)) for a in self.command]


APPLICATIONS = {
    "bookshelf": App("bookshelf", [sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"],
                     ("/books/1/", "/books/<int:pk>/"), "/books/9/", "/books/crash/",
                     ("book looked up", "book_id", "api_token")),
    "bookshelf-asgi": App("bookshelf", [sys.executable, "-m", "uvicorn", "bookshelf.asgi:application", "--port",
                                        "{port}"],
                          ("/books/1/", "/books/<int:pk>/"), "/books/9/", "/books/crash/",
                          ("book looked up", "book_id", "api_token")),
    "flaskr": App("flaskr", [sys.executable, "-m", "flask", "--app", "flaskr", "run", "--port", "{port}"],
                  ("/posts/1", "/posts/<int:post_id>"), "/posts/9", "/crash",
                  ("post read", "post_id", "password")),
    "inventory": App("inventory", [sys.executable, "-m", "uvicorn", "inventory.main:app", "--port", "{port}"],
                     ("/stock/apple", "/stock/{sku}"), "/stock/kiwi", "/crash",
                     ("stock read", "count", "secret")),
}


@pytest.fixture(scope="module", params=sorted(APPLICATIONS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[App, int, OTLPReceiver]]:
    app = APPLICATIONS[request.param]
    port = free_port()
    with OTLPReceiver() as receiver, serve(app.argv(port), APPS / app.name,
                                           app_env(receiver, OBSBOX_IN_APP="1"), port):
        yield app, port, receiver


def _server_span(receiver: OTLPReceiver, method: str, path: str) -> SpanRecord:
    def found() -> list[SpanRecord]:
        return [s for s in receiver.spans() if s.kind == 2 and s.attributes.get("http.request.method") == method
                and s.attributes.get("url.path") == path]

    return receiver.wait_for(found, timeout=15)[-1]


def test_span_names_and_routes_follow_the_http_conventions(served: tuple[App, int, OTLPReceiver]) -> None:
    app, port, receiver = served
    path, template = app.found
    cases = [("GET", "/", 200, "/"), ("GET", path, 200, template), ("GET", app.missing, 404, template),
             ("POST", path, 405, template), ("GET", "/no/such/page", 404, None)]
    for method, target, status, route in cases:
        assert request(port, method, target)[0] == status, (method, target)
        span = _server_span(receiver, method, target)
        assert span.attributes["http.response.status_code"] == status
        assert span.attributes.get("http.route") == route, (method, target)
        assert span.name == (f"{method} {route}" if route else method)
        assert span.status_code == 0  # a 4xx is not a server error

        assert receiver.wait_for(lambda m=method, s=status, r=route: [
            p for p in receiver.metrics("http.server.request.duration")
            if p.attributes.get("http.response.status_code") == s and p.attributes.get("http.request.method") == m
            and p.attributes.get("http.route") == r], timeout=15)


def test_the_servers_log_of_a_500_carries_the_trace(served: tuple[App, int, OTLPReceiver]) -> None:
    app, port, receiver = served
    assert get(port, app.crash)[0] == 500
    span = _server_span(receiver, "GET", app.crash)

    def error_logs() -> list[LogRecord]:
        return [r for r in receiver.logs() if r.attributes.get("exception.type") == "RuntimeError"]

    (record, *_) = receiver.wait_for(error_logs, timeout=15)
    assert record.trace_id == span.trace_id and record.span_id == span.span_id, record.body


def test_stdlib_log_records_keep_their_extra_fields_redacted(served: tuple[App, int, OTLPReceiver]) -> None:
    app, port, receiver = served
    message, field, secret = app.logs
    assert get(port, app.found[0])[0] == 200
    (record, *_) = receiver.wait_for(lambda: [r for r in receiver.logs() if r.body == message], timeout=15)
    assert field in record.attributes and record.attributes[secret] == "REDACTED"
    assert all("s3cret" not in str(v) and "hunter2" not in str(v) and "do-not-export" not in str(v)
               for v in record.attributes.values())
    assert record.trace_id in {s.trace_id for s in receiver.spans() if s.attributes.get("url.path") == app.found[0]}
