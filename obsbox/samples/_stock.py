"""inventory's stock, kept in a real database through SQLAlchemy Core, so every lookup and reservation is a
database span and a `db.client.operation.duration` measurement (obsbox instruments SQLAlchemy by itself).

>>> stock = Stock.open(None)                  # SQLite in a file of its own; a URL: PostgreSQL and the like
>>> stock.reserve("tea-01", 2)                # ("reserved", unit price in cents)
('reserved', 650)
>>> stock.close()

$OBSBOX_SAMPLES_DATABASE_URL picks the database (any SQLAlchemy URL whose driver is installed); a server that does
not answer, or a database that cannot be used, is reported once and SQLite is used instead (`open_stock`), so the
shop always starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    TextClause,
    create_engine,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url

from obsbox.samples._deps import DATABASE_URL, reachable

_log = logging.getLogger("obsbox.samples")

# What a relational inventory keeps: one row per item, the stock and how much a delivery brings.
_metadata = MetaData()
ITEMS = Table(
    "items", _metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("unit_price_cents", Integer, nullable=False),
    Column("stock", Integer, nullable=False),
    Column("delivery", Integer, nullable=False),
)
REORDER_POINT = 10

Outcome = Literal["reserved", "unknown", "out of stock"]


class Stock:
    """The items table: create it and fill it on first use, read items, reserve atomically."""

    def __init__(self, engine: Engine, cleanup: str | None = None) -> None:
        self.engine = engine
        self._cleanup = cleanup
        # SQLite has one writer at a time; waiting here is cheaper than on its busy timeout. A server database
        # needs no lock: the reservation is one conditional UPDATE.
        self._lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._slow = _slow_query(engine)

    @classmethod
    def open(cls, url: str | None, catalogue: Mapping[str, tuple[str, int, int]] | None = None) -> Stock:
        """Connect to `url` (None: a new SQLite file) and make sure every catalogue item has a row."""
        cleanup = None
        if url is None:
            cleanup = tempfile.mkdtemp(prefix="obsbox-inventory-")
            url = f"sqlite:///{os.path.join(cleanup, 'stock.db')}"
        stock = cls(create_engine(url, pool_pre_ping=True), cleanup)
        _metadata.create_all(stock.engine)
        if catalogue:
            with stock.engine.begin() as conn:
                have = set(conn.execute(select(ITEMS.c.sku)).scalars())
                rows = [{"sku": sku, "name": name, "unit_price_cents": price, "stock": initial, "delivery": initial}
                        for sku, (name, price, initial) in catalogue.items() if sku not in have]
                if rows:
                    conn.execute(insert(ITEMS), rows)
        return stock

    @property
    def where(self) -> str:
        """The database, for a log line (never the password)."""
        return self.engine.url.render_as_string(hide_password=True)

    def items(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ITEMS.c.sku, ITEMS.c.name, ITEMS.c.unit_price_cents, ITEMS.c.stock)
                                .order_by(ITEMS.c.sku))
            return [dict(row._mapping) for row in rows]

    def item(self, sku: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(ITEMS.c.sku, ITEMS.c.name, ITEMS.c.unit_price_cents, ITEMS.c.stock)
                               .where(ITEMS.c.sku == sku)).first()
            return dict(row._mapping) if row is not None else None

    def reserve(self, sku: str, quantity: int, slow_query_s: float = 0.0) -> tuple[Outcome, int | None]:
        """Take `quantity` off the stock in one transaction: (outcome, unit price in cents when reserved).

        Below the reorder point the supplier delivers at once (a long demo never runs dry); an item whose
        delivery is 0 is never restocked, to show an out-of-stock answer. `slow_query_s` (the slow-query fault):
        first run a query that takes that long in the database itself — outside the reservation's lock and
        transaction, so it delays this request and not the others.
        """
        if slow_query_s > 0 and self._slow is not None:
            with self.engine.connect() as conn:
                conn.execute(self._slow, {"seconds": slow_query_s})
        if self._lock is None:
            return self._reserve(sku, quantity)
        with self._lock:
            return self._reserve(sku, quantity)

    def _reserve(self, sku: str, quantity: int) -> tuple[Outcome, int | None]:
        with self.engine.begin() as conn:
            taken = conn.execute(update(ITEMS).where(ITEMS.c.sku == sku, ITEMS.c.stock >= quantity)
                                 .values(stock=ITEMS.c.stock - quantity).returning(ITEMS.c.unit_price_cents))
            price = taken.scalar()
            if price is None:
                known = conn.execute(select(ITEMS.c.sku).where(ITEMS.c.sku == sku)).first()
                return ("out of stock" if known else "unknown"), None
            conn.execute(update(ITEMS).where(ITEMS.c.sku == sku, ITEMS.c.stock < REORDER_POINT,
                                             ITEMS.c.delivery > 0)
                         .values(stock=ITEMS.c.stock + ITEMS.c.delivery))
            return "reserved", int(price)

    def close(self) -> None:
        self.engine.dispose()
        if self._cleanup:
            shutil.rmtree(self._cleanup, ignore_errors=True)


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return 0


def _slow_query(engine: Engine) -> TextClause | None:
    """A statement that takes :seconds in the database: pg_sleep on PostgreSQL; on SQLite a function of ours
    registered on every connection (SQLite has no sleep). None for other databases: the fault does nothing."""
    if engine.dialect.name == "postgresql":
        return text("SELECT pg_sleep(:seconds)")
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect",
                     lambda dbapi_connection, _record: dbapi_connection.create_function("obsbox_sleep", 1, _sleep))
        return text("SELECT obsbox_sleep(:seconds)")
    return None


def open_stock(catalogue: Mapping[str, tuple[str, int, int]]) -> Stock:
    """The stock where $OBSBOX_SAMPLES_DATABASE_URL says, else (or when that fails: a driver that is not installed,
    refused credentials) in a SQLite file of its own — the shop always starts, and says once why not there."""
    url = database_url()
    if url is not None:
        try:
            return Stock.open(url, catalogue)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the demo goes on with SQLite
            _log.warning("inventory: cannot keep the stock at %s=%s (%s); keeping it in SQLite instead",
                         DATABASE_URL, make_url(url).render_as_string(hide_password=True), type(exc).__name__)
    return Stock.open(None, catalogue)


def database_url() -> str | None:
    """$OBSBOX_SAMPLES_DATABASE_URL when its server answers (or it is a SQLite file); None: a SQLite file of our own."""
    url = os.environ.get(DATABASE_URL, "").strip()
    if not url:
        return None
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" or reachable(
            f"//{parsed.host or ''}:{parsed.port or 5432}", 5432):
        return url
    _log.warning("inventory: no database answers at %s=%s; keeping the stock in SQLite instead", DATABASE_URL,
                 parsed.render_as_string(hide_password=True))
    return None
