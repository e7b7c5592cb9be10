"""The sample shop's own dependencies, as a real service has them: inventory's stock in a database (SQLite by
default, PostgreSQL when one answers), orders' cache in Redis and fulfilment by a Celery worker over Redis as the
broker — real processes, real servers on 127.0.0.1, telemetry checked at a real OTLP receiver."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from obsbox.samples import SERVICES, faults, shop
from obsbox.samples._deps import DATABASE_URL, REDIS_URL, note
from obsbox.samples._services import WORKER, shop_processes
from obsbox.samples._stock import Stock, database_url, open_stock
from obsbox.samples.inventory import CATALOGUE
from obsbox.testing import OTLPReceiver, SpanRecord
from tests.instrumentation.integrations.conftest import Postgres, Redis, postgres_server, redis_server  # noqa: F401

from .conftest import SHOP_ENV, http, points

pytestmark = pytest.mark.slow
SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP span kinds


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def _order(running: shop.Shop, trace_id: str, sku: str = "tea-01") -> tuple[int, dict[str, object]]:
    status, body, _ = http("POST", running.urls["gateway"] + "/orders", {"sku": sku, "quantity": 1},
                           {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
    return status, body


def _trace(receiver: OTLPReceiver, trace_id: str, *wanted: str) -> dict[str, list[SpanRecord]]:
    """The trace's spans by service, once every `wanted` span name has arrived."""
    def complete() -> dict[str, list[SpanRecord]] | None:
        spans = [s for s in receiver.spans() if s.trace_id == trace_id]
        if not set(wanted) <= {s.name for s in spans}:
            return None
        by_service: dict[str, list[SpanRecord]] = {}
        for s in spans:
            by_service.setdefault(str(s.resource.get("service.name")), []).append(s)
        return by_service

    return receiver.wait_for(complete, timeout=30)


# --- what the shop runs without ---------------------------------------------------------------------------------


def test_the_note_says_what_is_skipped_and_how_to_turn_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REDIS_URL, raising=False)
    unset = note()
    assert unset is not None and f"{REDIS_URL} is not set" in unset and f"{REDIS_URL}=redis://" in unset
    assert [p.name for p in shop_processes()] == ["inventory", "payments", "orders", "gateway"]
    down = f"redis://127.0.0.1:{_closed_port()}/0"
    monkeypatch.setenv(REDIS_URL, down)
    assert f"nothing answers at {REDIS_URL}={down}" in str(note())
    assert WORKER not in [p.name for p in shop_processes()]


def test_an_unreachable_database_falls_back_to_sqlite(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(DATABASE_URL, f"postgresql+psycopg://shop:secret-pw@127.0.0.1:{_closed_port()}/shop")
    with caplog.at_level("WARNING", logger="obsbox.samples"):
        assert database_url() is None
    assert "keeping the stock in SQLite" in caplog.text and "secret-pw" not in caplog.text
    stock = Stock.open(None, CATALOGUE)
    try:
        assert stock.engine.dialect.name == "sqlite"
        assert stock.reserve("tea-01", 2) == ("reserved", CATALOGUE["tea-01"][1])
        assert stock.reserve("kettle-99", 1) == ("out of stock", None)
        assert stock.reserve("nope", 1) == ("unknown", None)
        # below the reorder point the supplier delivers the initial stock again
        assert stock.reserve("pot-01", 45) == ("reserved", CATALOGUE["pot-01"][1])
        assert stock.item("pot-01") == {"sku": "pot-01", "name": CATALOGUE["pot-01"][0],
                                        "unit_price_cents": CATALOGUE["pot-01"][1], "stock": 55}
        where = Path(str(stock.engine.url.database)).parent
    finally:
        stock.close()
    assert not where.exists()  # the shop's own SQLite file goes with it


def test_a_database_that_cannot_be_used_falls_back_to_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(DATABASE_URL, f"sqlite:///{tmp_path}/no-such-directory/stock.db")  # cannot be opened
    with caplog.at_level("WARNING", logger="obsbox.samples"):
        stock = open_stock(CATALOGUE)
    try:
        assert "cannot keep the stock" in caplog.text and "OperationalError" in caplog.text
        assert str(tmp_path) not in str(stock.engine.url) and stock.reserve("tea-01", 1)[0] == "reserved"
    finally:
        stock.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def bare_shop(receiver: OTLPReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[shop.Shop]:
    """The shop with no Redis and no database URL: SQLite, no cache, no worker."""
    env = SHOP_ENV | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, REDIS_URL: "", DATABASE_URL: ""}
    with shop.start(ports={name: 0 for name in SERVICES}, env=env,
                    log_dir=tmp_path_factory.mktemp("bare-shop")) as running:
        yield running


def test_without_redis_the_shop_says_once_what_it_skips_and_orders_still_work(bare_shop: shop.Shop) -> None:
    assert set(bare_shop.processes) == set(SERVICES)  # no worker
    trace_id = uuid.uuid4().hex
    status, body = _order(bare_shop, trace_id)
    assert status == 201, body
    status, found, _ = http("GET", f"{bare_shop.urls['orders']}/orders/{body['order_id']}")
    assert status == 200 and found["status"] in ("accepted", "fulfilled")
    logs = {name: bare_shop.log(name) for name in SERVICES}
    assert logs["orders"].count(f"{REDIS_URL} is not set") == 1, logs["orders"]
    assert all(REDIS_URL not in text for name, text in logs.items() if name != "orders")


def test_with_sqlite_an_order_trace_has_inventorys_queries(bare_shop: shop.Shop, receiver: OTLPReceiver) -> None:
    trace_id = uuid.uuid4().hex
    assert _order(bare_shop, trace_id)[0] == 201
    spans = _trace(receiver, trace_id, "POST /reservations", "UPDATE items")["inventory"]
    (server,) = [s for s in spans if s.kind == SERVER]
    queries = [s for s in spans if s.kind == CLIENT]
    assert queries and all(q.parent_span_id == server.span_id for q in queries)
    update = next(q for q in queries if q.name == "UPDATE items")
    assert update.attributes["db.system.name"] == "sqlite"
    assert update.attributes["db.operation.name"] == "UPDATE"
    assert update.attributes["db.collection.name"] == "items"
    assert "tea-01" not in str(update.attributes)  # the sku is a bound parameter: never recorded
    assert receiver.wait_for(lambda: points(receiver, "db.client.operation.duration", "inventory",
                                            **{"db.system.name": "sqlite", "db.operation.name": "UPDATE"}))


def test_the_slow_query_fault_makes_a_slow_database_span_and_one_slow_operation_line(
        bare_shop: shop.Shop, receiver: OTLPReceiver) -> None:
    faults.set_faults(bare_shop.urls["inventory"], slow_query_ms=1100)
    try:
        trace_id = uuid.uuid4().hex
        assert _order(bare_shop, trace_id)[0] == 201
    finally:
        faults.reset_faults(bare_shop.urls["inventory"])
    spans = _trace(receiver, trace_id, "POST /reservations", "UPDATE items")["inventory"]
    (slow,) = [s for s in spans if s.kind == CLIENT and s.end_time_unix_nano - s.start_time_unix_nano >= 1.1e9]
    assert slow.attributes["db.system.name"] == "sqlite" and slow.attributes["db.operation.name"] == "SELECT"
    # what the Logs dashboard's slow-operation search finds: one WARNING line, in the span of the slow query
    line = receiver.wait_for(lambda: [r for r in receiver.logs() if r.trace_id == trace_id
                                      and str(r.body).startswith("slow database operation")] or None)
    assert len(line) == 1 and line[0].span_id == slow.span_id
    assert line[0].resource["service.name"] == "inventory" and line[0].severity_text == "WARNING"
    assert float(line[0].attributes["duration_s"]) >= 1.1 and line[0].attributes["db.system.name"] == "sqlite"


# --- with PostgreSQL, Redis and the Celery worker ---------------------------------------------------------------


@pytest.fixture(scope="module")
def full_shop(receiver: OTLPReceiver, postgres_server: Postgres, redis_server: Redis,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[shop.Shop]:
    env = SHOP_ENV | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                      DATABASE_URL: postgres_server.url("psycopg"),
                      REDIS_URL: f"redis://{redis_server.host}:{redis_server.port}/3",
                      "ORDERS_CACHE_TTL_S": "60"}
    with shop.start(ports={name: 0 for name in SERVICES}, env=env,
                    log_dir=tmp_path_factory.mktemp("full-shop")) as running:
        yield running


def test_with_redis_and_celery_one_order_trace_has_the_query_the_cache_and_the_task(
        full_shop: shop.Shop, receiver: OTLPReceiver) -> None:
    assert WORKER in full_shop.processes and WORKER not in full_shop.urls
    status, text, _ = http("GET", f"{full_shop.worker_url}/metrics")  # the pull endpoint, for scrapers
    assert status == 200 and 'service_name="fulfilment"' in text
    assert REDIS_URL not in full_shop.log("orders")  # nothing skipped, nothing said
    trace_id = uuid.uuid4().hex
    status, body = _order(full_shop, trace_id)
    assert status == 201, body
    by_service = _trace(receiver, trace_id, "UPDATE items", "send shop.fulfil", "process shop.fulfil", "SET 3")
    update = next(s for s in by_service["inventory"] if s.name == "UPDATE items")
    assert update.attributes["db.system.name"] == "postgresql"
    assert update.attributes["server.address"] == "127.0.0.1"
    (send,) = [s for s in by_service["orders"] if s.name == "send shop.fulfil"]
    (task,) = [s for s in by_service[WORKER] if s.kind == CONSUMER]
    assert task.name == "process shop.fulfil" and task.parent_span_id == send.span_id
    assert task.resource["process.pid"] == full_shop.processes[WORKER].pid
    (mark,) = [s for s in by_service[WORKER] if s.name == "SET 3"]  # the worker marks the order fulfilled
    assert mark.parent_span_id == task.span_id and mark.attributes["db.system.name"] == "redis"
    assert body["order_id"] not in str(mark.attributes)  # the key is never recorded
    status, found, _ = receiver.wait_for(lambda: (r := http(
        "GET", f"{full_shop.urls['orders']}/orders/{body['order_id']}"))[1].get("status") == "fulfilled" and r,
        timeout=20)
    assert status == 200


def test_the_catalogue_is_cached_in_redis(full_shop: shop.Shop, receiver: OTLPReceiver) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    for trace_id in (first, second):
        status, _, _ = http("GET", full_shop.urls["gateway"] + "/catalogue/mug-01",
                            headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"})
        assert status == 200
    miss = _trace(receiver, first, "GET 3", "SET 3", "GET /items/{sku}")
    assert any(s.name == "SELECT items" for s in miss["inventory"])  # a miss asks inventory (and its database)
    hit = _trace(receiver, second, "GET 3")
    assert "inventory" not in hit and {s.name for s in hit["orders"]} >= {"GET 3"}
    assert receiver.wait_for(lambda: points(receiver, "db.client.operation.duration", "orders",
                                            **{"db.system.name": "redis", "db.operation.name": "GET"}))
    assert receiver.wait_for(lambda: points(receiver, "messaging.process.duration", WORKER,
                                            **{"celery.task.name": "shop.fulfil", "celery.task.state": "SUCCESS"}))
