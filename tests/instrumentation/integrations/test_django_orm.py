"""Django's ORM in a real Django project (tests/apps/bookshelf, served by `manage.py runserver` with the README's
lines in wsgi.py) against SQLite and the real PostgreSQL (through psycopg 3, whose own hook is on too): each
statement is one CLIENT span under the request's SERVER span, with the database conventions' attributes, and one
`db.client.operation.duration` point; parameters never reach the receiver."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from obsbox.testing import MetricPoint, OTLPReceiver, SpanRecord
from tests._apps import APPS, app_env, get, serve
from tests._processes import free_port
from tests.instrumentation.integrations.conftest import Postgres

pytestmark = pytest.mark.slow

CLIENT, SERVER, ERROR = 3, 2, 2
SECRET = "hunter2-s3cret-title"  # in every title the app stores (catalog/shelf.py)


@pytest.fixture(params=["sqlite", "postgresql"])
def shelf(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int, OTLPReceiver]]:
    """The bookshelf project on a fresh database, its tables made by `migrate` (uninstrumented), served."""
    if request.param == "sqlite":
        database = f"sqlite://{tmp_path / 'shelf.sqlite3'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres_server")
        database = f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.database}"
        subprocess.run(["psql", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", pg.database, "-q", "-c",
                        "DROP TABLE IF EXISTS catalog_shelf, django_migrations"], check=False, capture_output=True)
    env = app_env(None, BOOKSHELF_DATABASE=database)
    subprocess.run([sys.executable, "manage.py", "migrate", "--run-syncdb", "-v", "0"], cwd=APPS / "bookshelf",
                   env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    with OTLPReceiver() as receiver, serve(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], APPS / "bookshelf",
            app_env(receiver, OBSBOX_IN_APP="1", BOOKSHELF_DATABASE=database), port, ready="/books/2/"):
        yield request.param, port, receiver


def _request_spans(receiver: OTLPReceiver, route: str, count: int) -> list[SpanRecord]:
    def ready() -> list[SpanRecord] | None:
        spans = [s for s in receiver.spans() if s.kind == SERVER and s.attributes.get("http.route") == route]
        return spans if len(spans) >= count else None

    return receiver.wait_for(ready, timeout=20)


def _children(receiver: OTLPReceiver, parent: SpanRecord) -> list[SpanRecord]:
    return [s for s in receiver.spans() if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id]


def test_orm_statements_are_spans_under_the_request_with_metrics(shelf: tuple[str, int, OTLPReceiver]) -> None:
    system, port, receiver = shelf
    assert get(port, "/books/shelf/add/7/")[0] == 201
    assert get(port, "/books/shelf/1/")[0] == 200
    (add,) = _request_spans(receiver, "/books/shelf/add/<int:n>/", 1)
    (lookup,) = _request_spans(receiver, "/books/shelf/<int:pk>/", 1)

    inserts = receiver.wait_for(lambda: [s for s in _children(receiver, add) if s.kind == CLIENT
                                         and s.attributes.get("db.operation.name") == "INSERT"], timeout=20)
    (insert,) = inserts
    assert insert.name == "INSERT catalog_shelf"
    assert insert.attributes["db.system.name"] == system
    assert insert.attributes["db.collection.name"] == "catalog_shelf"
    assert insert.attributes["db.query.summary"] == "INSERT catalog_shelf"
    assert "%s" in insert.attributes["db.query.text"]  # the placeholders, never the values

    def shelf_selects() -> list[SpanRecord] | None:
        spans = [s for s in _children(receiver, lookup) if s.kind == CLIENT
                 and s.attributes.get("db.collection.name") == "catalog_shelf"]
        return spans if len(spans) >= 2 else None

    selects = receiver.wait_for(shelf_selects, timeout=20)
    assert sorted(s.name for s in selects) == ["SELECT catalog_shelf", "SELECT catalog_shelf"]
    assert sorted(s.attributes["db.query.text"].split(" FROM ")[0] for s in selects) == [
        'SELECT "catalog_shelf"."id", "catalog_shelf"."title", "catalog_shelf"."copies"', "SELECT COUNT(*) AS \"__count\""]
    first = next(s for s in selects if "LIMIT" in s.attributes["db.query.text"])
    assert first.attributes["db.query.text"].endswith("LIMIT ?")  # Django inlines LIMIT 21: sanitized
    if system == "postgresql":
        assert first.attributes["server.address"] == "127.0.0.1"
        assert isinstance(first.attributes["server.port"], int)
        assert first.attributes["db.namespace"] == "obsbox"
    else:
        assert "server.address" not in first.attributes

    # One statement, one span: psycopg's own hook stays silent under Django's (no CLIENT span has a CLIENT parent).
    client_ids = {s.span_id for s in receiver.spans() if s.kind == CLIENT}
    assert not [s for s in receiver.spans() if s.kind == CLIENT and s.parent_span_id in client_ids]
    assert len([s for s in receiver.spans() if s.attributes.get("db.operation.name") == "INSERT"]) == 1

    def points() -> list[MetricPoint]:
        return [p for p in receiver.metrics("db.client.operation.duration")
                if p.attributes.get("db.query.summary") == "SELECT catalog_shelf"
                and p.attributes.get("db.system.name") == system]

    point = receiver.wait_for(points, timeout=20)[-1]
    assert point.count == 2 and point.unit == "s"
    assert "db.query.text" not in point.attributes

    exported = [m.SerializeToString() for m in receiver.trace_requests + receiver.metric_requests]
    assert all(SECRET.encode() not in body for body in exported)


def test_a_failed_statement_sets_the_error_without_the_message(shelf: tuple[str, int, OTLPReceiver]) -> None:
    system, port, receiver = shelf
    assert get(port, "/books/shelf/add/7/")[0] == 201
    assert get(port, "/books/shelf/add/7/")[0] == 409
    second = _request_spans(receiver, "/books/shelf/add/<int:n>/", 2)
    failed = receiver.wait_for(lambda: [s for r in second for s in _children(receiver, r)
                                        if s.kind == CLIENT and s.status_code == ERROR], timeout=20)
    (span,) = failed
    assert span.name == "INSERT catalog_shelf"
    assert span.attributes["error.type"] == "django.db.utils.IntegrityError"
    if system == "postgresql":
        assert span.attributes["db.response.status_code"] == "23505"  # unique_violation, from psycopg's error
    assert span.events == [("exception", {"exception.type": "django.db.utils.IntegrityError"})]  # no message
    exported = [m.SerializeToString() for m in receiver.trace_requests]
    assert all(SECRET.encode() not in body for body in exported)


def test_the_async_orm_under_asgi_is_under_the_request_span(tmp_path: Path) -> None:
    """`await ...afirst()` in an async view served by uvicorn (asgi.py with the README's lines): Django runs the
    query in a worker thread, whose span still has the request's SERVER span as its parent."""
    database = f"sqlite://{tmp_path / 'shelf.sqlite3'}"
    env = app_env(None, BOOKSHELF_DATABASE=database)
    subprocess.run([sys.executable, "manage.py", "migrate", "--run-syncdb", "-v", "0"], cwd=APPS / "bookshelf",
                   env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    with OTLPReceiver() as receiver, serve(
            [sys.executable, "-m", "uvicorn", "bookshelf.asgi:application", "--port", str(port)],
            APPS / "bookshelf", app_env(receiver, OBSBOX_IN_APP="1", BOOKSHELF_DATABASE=database), port,
            ready="/books/2/"):
        assert get(port, "/books/shelf/add/3/")[0] == 201
        assert get(port, "/books/shelf/async/1/")[0] == 200
        (request,) = _request_spans(receiver, "/books/shelf/async/<int:pk>/", 1)
        (select,) = receiver.wait_for(lambda: [s for s in _children(receiver, request) if s.kind == CLIENT],
                                      timeout=20)
        assert select.name == "SELECT catalog_shelf" and select.attributes["db.system.name"] == "sqlite"
