"""SQL through SQLAlchemy (Core, ORM, sync, asyncio), psycopg 3 and asyncpg against a real PostgreSQL, exported to
the real OTLP receiver, under the SERVER span of a real uvicorn-served FastAPI app."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from opentelemetry import context as otel_context
from psycopg import sql
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import obsbox
from obsbox.instrumentation import integrations
from obsbox.instrumentation.integrations import psycopg as pg_integration
from obsbox.instrumentation.integrations import sqlalchemy as sa_integration
from obsbox.testing import Capture, SpanRecord, capture
from tests.instrumentation._served import get, served
from tests.instrumentation.integrations.conftest import Postgres

SECRET = "hunter2-s3cret-pw"
CLIENT, SERVER, ERROR = 3, 2, 2
# The stable database conventions' names, pinned.
DB_METRIC = "db.client.operation.duration"
DB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture(service_name="shop-db", console=False, schedule_delay=0.05) as c:
        yield c


@pytest.fixture
def table(postgres_server: Postgres) -> Iterator[None]:
    # Set up with instrumentation suppressed (as OpenTelemetry's exporters do): these statements record nothing.
    token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS items; CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
            conn.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
    finally:
        otel_context.detach(token)
    yield


def db_spans(cap: Capture, count: int) -> list[SpanRecord]:
    got = cap.receiver.wait_for(lambda: [s for s in cap.spans() if s.kind == CLIENT] if len(
        [s for s in cap.spans() if s.kind == CLIENT]) >= count else None)
    return got


def server_span(cap: Capture) -> SpanRecord:
    (span,) = cap.receiver.wait_for(lambda: [s for s in cap.spans() if s.kind == SERVER])
    return span


def check_under(span: SpanRecord, parent: SpanRecord) -> None:
    assert span.trace_id == parent.trace_id and span.parent_span_id == parent.span_id


def test_sqlalchemy_core_and_orm_sync_spans_metrics_and_parentage(cap: Capture, postgres_server: Postgres,
                                                                  table: None) -> None:
    engine = sa.create_engine(postgres_server.url("psycopg"))
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, Any]:
        with engine.connect() as conn:
            name = conn.execute(sa.text("SELECT name FROM items WHERE id = :id"), {"id": item_id}).scalar_one()
        with Session(engine) as session:
            orm = session.get(Item, item_id)
            assert orm is not None
        return {"name": name, "orm": orm.name}

    with served(obsbox.instrument(app)) as base:
        assert get(base + "/items/2") == 200
    request = server_span(cap)
    # (SQLAlchemy's first connection asks the server its version and settings: spans of their own)
    core, orm = cap.receiver.wait_for(lambda: [s for s in cap.spans() if s.name == "SELECT items"])
    for span in (core, orm):
        check_under(span, request)
        attrs = span.attributes
        assert span.name == "SELECT items"
        assert attrs["db.system.name"] == "postgresql"
        assert attrs["db.operation.name"] == "SELECT"
        assert attrs["db.collection.name"] == "items"
        assert attrs["db.query.summary"] == "SELECT items"
        assert attrs["db.namespace"] == "obsbox"
        assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == postgres_server.port
        assert "2" not in str(attrs["db.query.text"]).split()  # the id is a parameter, never read
    assert core.attributes["db.query.text"] == "SELECT name FROM items WHERE id = %(id)s"
    # One span per statement: psycopg below SQLAlchemy does not record it again.
    assert len([s for s in cap.spans() if s.kind == CLIENT and s.name == "SELECT items"]) == 2

    points = cap.receiver.wait_for(lambda: [p for p in cap.metrics(DB_METRIC)
                                            if p.attributes.get("db.collection.name") == "items"])
    point = points[-1]
    assert point.unit == "s" and point.kind == "histogram" and point.count == 2
    assert point.explicit_bounds == DB_BUCKETS
    assert point.attributes == {
        "db.system.name": "postgresql", "db.namespace": "obsbox", "db.operation.name": "SELECT",
        "db.collection.name": "items", "db.query.summary": "SELECT items", "server.address": "127.0.0.1",
        "server.port": postgres_server.port,
    }
    assert {e.trace_id for e in point.exemplars} == {request.trace_id}


def test_sqlalchemy_asyncio_over_asyncpg(cap: Capture, postgres_server: Postgres, table: None) -> None:
    engine = create_async_engine(postgres_server.url("asyncpg"))
    app = FastAPI()

    @app.get("/count")
    async def count() -> dict[str, int]:
        async with engine.connect() as conn:
            n = (await conn.execute(sa.text("SELECT count(*) FROM items WHERE name <> 'x'"))).scalar_one()
        return {"n": n}

    with served(obsbox.instrument(app)) as base:
        assert get(base + "/count") == 200
    request = server_span(cap)
    spans = [s for s in db_spans(cap, 1) if s.name == "SELECT items"]
    (span,) = spans  # asyncpg below SQLAlchemy does not record it again
    check_under(span, request)
    assert span.attributes["db.query.text"] == "SELECT count(*) FROM items WHERE name <> ?"
    assert span.attributes["db.system.name"] == "postgresql"
    asyncio.run(engine.dispose())


def test_psycopg_sync_and_async_and_composed(cap: Capture, postgres_server: Postgres, table: None) -> None:
    with cap.telemetry.tracer.start_as_current_span("job") as job, psycopg.connect(postgres_server.dsn) as conn:
        conn.execute("UPDATE items SET name = %s WHERE id = %s", (SECRET, 1))
        conn.execute(sql.SQL("SELECT * FROM {} WHERE name = {}").format(sql.Identifier("items"),
                                                                        sql.Literal(SECRET)))

        async def run() -> None:
            async with await psycopg.AsyncConnection.connect(postgres_server.dsn) as aconn:
                await aconn.execute("DELETE FROM items WHERE id = %s", (2,))

        asyncio.run(run())
    spans = db_spans(cap, 3)
    by_name = {s.name: s for s in spans}
    assert by_name["UPDATE items"].attributes["db.query.text"] == "UPDATE items SET name = %s WHERE id = %s"
    assert by_name["SELECT items"].attributes["db.query.text"] == 'SELECT * FROM "items" WHERE name = ?'
    assert by_name["DELETE items"].attributes["db.operation.name"] == "DELETE"
    parent = job.get_span_context()
    for name in ("UPDATE items", "SELECT items", "DELETE items"):
        assert by_name[name].parent_span_id == format(parent.span_id, "016x")


def test_asyncpg_methods(cap: Capture, postgres_server: Postgres, table: None) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(host=postgres_server.host, port=postgres_server.port,
                                     user=postgres_server.user, database=postgres_server.database)
        try:
            await conn.fetch("SELECT * FROM items WHERE name = $1", SECRET)
            await conn.fetchval("SELECT count(*) FROM items")
            await conn.execute(f"UPDATE items SET name = '{SECRET}' WHERE id = 1")
        finally:
            await conn.close()

    with cap.telemetry.tracer.start_as_current_span("job"):
        asyncio.run(run())
    spans = db_spans(cap, 3)
    texts = sorted(str(s.attributes["db.query.text"]) for s in spans)
    assert texts == ["SELECT * FROM items WHERE name = $1", "SELECT count(*) FROM items",
                     "UPDATE items SET name = ? WHERE id = ?"]
    assert {s.attributes["server.port"] for s in spans} == {postgres_server.port}


def test_errors_set_status_and_error_type_without_the_message(cap: Capture, postgres_server: Postgres,
                                                              table: None) -> None:
    engine = sa.create_engine(postgres_server.url("psycopg"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO items VALUES (1, '{SECRET}')"))
    (span,) = cap.receiver.wait_for(lambda: [s for s in cap.spans() if s.name == "INSERT items"])
    assert span.status_code == ERROR
    assert span.attributes["error.type"] == "psycopg.errors.UniqueViolation"
    assert span.attributes["db.response.status_code"] == "23505"
    assert span.events == [("exception", {"exception.type": "psycopg.errors.UniqueViolation"})]
    point = cap.receiver.wait_for(lambda: [p for p in cap.metrics(DB_METRIC) if "error.type" in p.attributes])[-1]
    assert point.attributes["error.type"] == "psycopg.errors.UniqueViolation"
    assert point.attributes["db.response.status_code"] == "23505"


def test_a_password_in_a_query_never_reaches_the_receiver(cap: Capture, postgres_server: Postgres,
                                                          table: None) -> None:
    """Inline, as a parameter, in a Composed literal, in a failing statement whose error quotes it: nothing
    exported (spans, metrics, logs) holds the secret."""
    engine = sa.create_engine(postgres_server.url("psycopg"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE items SET name = '{SECRET}' WHERE id = 1 /* {SECRET} */"))
        conn.execute(sa.text("UPDATE items SET name = :pw WHERE id = 2"), {"pw": SECRET})
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO items VALUES (1, :pw)"), {"pw": SECRET})
    with psycopg.connect(postgres_server.dsn) as raw:
        raw.execute(sql.SQL("SELECT {}").format(sql.Literal(SECRET)))
        with pytest.raises(psycopg.errors.UniqueViolation):
            raw.execute(f"INSERT INTO items VALUES (2, '{SECRET}')")
    cap.receiver.wait_for(lambda: len([s for s in cap.spans() if s.kind == CLIENT]) >= 5)
    cap.flush()
    exported = [m.SerializeToString() for m in
                cap.receiver.trace_requests + cap.receiver.metric_requests + cap.receiver.log_requests]
    assert exported and all(SECRET.encode() not in body for body in exported)


def test_instrumenting_twice_records_once(cap: Capture, postgres_server: Postgres, table: None) -> None:
    integrations.instrument_libraries()
    sa_integration.instrument()
    pg_integration.instrument()
    with psycopg.connect(postgres_server.dsn) as conn:
        conn.execute("SELECT 1 FROM items")
    engine = sa.create_engine(postgres_server.url("psycopg"))
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 2 FROM items"))
    spans = db_spans(cap, 2)
    assert len([s for s in spans if s.name == "SELECT items"]) == 2


def test_disabled_integrations_setting(postgres_server: Postgres, table: None) -> None:
    engine = sa.create_engine(postgres_server.url("psycopg"))
    # SQLAlchemy off: its statements are still seen, by psycopg below it.
    with capture(service_name="no-sa", console=False, disabled_integrations="sqlalchemy") as c:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 3 FROM items"))
        assert [s.name for s in db_spans(c, 1) if s.name == "SELECT items"] == ["SELECT items"]
    with capture(service_name="none", console=False, disabled_integrations="all") as c:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 4 FROM items"))
        with c.telemetry.tracer.start_as_current_span("marker"):
            pass
        c.receiver.wait_for(lambda: c.spans("marker"))
        assert [s for s in c.spans() if s.kind == CLIENT] == []
    integrations.instrument_libraries()


def test_unsupported_version_and_absent_library_one_line_each(caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              postgres_server: Postgres, table: None) -> None:
    integrations.uninstrument_libraries()
    monkeypatch.setattr(sa_integration, "SUPPORTED", ("0.1", "0.2"))
    monkeypatch.setattr(pg_integration, "LIBRARY", "psycopg_not_installed_here")
    with caplog.at_level(logging.DEBUG, logger="obsbox"):
        outcome = integrations.instrument_libraries()
        integrations.instrument_libraries()  # the version warning is not repeated
    assert outcome["sqlalchemy"].startswith("unsupported version ")
    assert outcome["psycopg"] == "not installed"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "is not instrumented: obsbox supports SQLAlchemy >=0.1,<0.2" in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.getMessage().startswith("obsbox: libraries:")]
    assert "sqlalchemy unsupported version" in infos[0] and "psycopg not installed" in infos[0]
    with capture(service_name="plain", console=False) as c:  # the application runs as before, uninstrumented
        engine = sa.create_engine(postgres_server.url("psycopg"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one() == 2
        with c.telemetry.tracer.start_as_current_span("marker"):
            pass
        c.receiver.wait_for(lambda: c.spans("marker"))
        assert [s for s in c.spans() if s.kind == CLIENT] == []
    monkeypatch.undo()
    integrations.instrument_libraries()


def test_sqlite_in_memory(cap: Capture) -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (x int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (42)"))
    spans = db_spans(cap, 2)
    assert {s.name for s in spans} >= {"CREATE t", "INSERT t"}
    insert = next(s for s in spans if s.name == "INSERT t")
    assert insert.attributes["db.system.name"] == "sqlite"
    assert "server.address" not in insert.attributes
    assert insert.attributes["db.query.text"] == "INSERT INTO t VALUES (?)"


def test_a_slow_operation_logs_one_structured_line_in_its_trace(postgres_server: Postgres, table: None) -> None:
    with capture(service_name="slow-db", console=False, schedule_delay=0.05, slow_operation_threshold=0.2) as c:
        with psycopg.connect(postgres_server.dsn) as conn:
            conn.execute("SELECT count(*) FROM items")  # fast: no line
            conn.execute("SELECT pg_sleep(0.3), name FROM items WHERE name <> %s", (SECRET,))
        (span,) = c.receiver.wait_for(lambda: [s for s in c.spans() if s.name == "SELECT items"
                                               and "pg_sleep" in str(s.attributes["db.query.text"])])
        (line,) = c.receiver.wait_for(lambda: [r for r in c.logs() if "slow database operation" in str(r.body)])
        assert re.fullmatch(r"slow database operation: SELECT items took \d+\.\d{3} s", str(line.body))
        assert line.severity_text == "WARNING"
        assert line.attributes["db.system.name"] == "postgresql"
        assert line.attributes["db.query.summary"] == "SELECT items"
        assert 0.3 <= float(line.attributes["duration_s"]) < 30  # type: ignore[arg-type]
        assert line.trace_id == span.trace_id and line.span_id == span.span_id
        assert SECRET not in str(line.body) + str(line.attributes)
        assert len([r for r in c.logs() if "slow database operation" in str(r.body)]) == 1
