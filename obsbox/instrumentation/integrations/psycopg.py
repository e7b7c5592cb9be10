"""psycopg 3: `Cursor.execute`/`executemany` and their async twins as CLIENT spans (db.system.name postgresql).

>>> from obsbox.instrumentation.integrations import psycopg as pg_integration
>>> pg_integration.instrument()      # configure() does this when psycopg is installed     # doctest: +SKIP

`Connection.execute` goes through a cursor, so it is covered too. The statement is analysed (and sanitized) from
its text: a `psycopg.sql.Composable` is rendered first, and any `Literal` it holds is sanitized like one written
inline; parameters are never read. server.address/server.port and db.namespace come from the connection's info.
Not covered: server-side (named) cursors' execute, `copy()`, pipelines' implicit syncs. A statement that
SQLAlchemy already records is not recorded twice.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from obsbox.instrumentation._server import report
from obsbox.instrumentation.integrations._db import (
    DbCall,
    Operation,
    Target,
    first_host,
    inside,
    mapping_int,
    traced,
    traced_async,
)
from obsbox.instrumentation.integrations._patch import unwrap_method, wrap_method

__all__ = ["DISTRIBUTION", "LIBRARY", "SUPPORTED", "instrument", "uninstrument"]

LIBRARY = "psycopg"
DISTRIBUTION = "psycopg"
SUPPORTED = ("3.1", "4")
_TARGET = "_obsbox_target"


def _target(connection: Any) -> Target:
    target: Target | None = connection.__dict__.get(_TARGET)
    if target is None:
        info = connection.info
        host = first_host(info.host)
        target = Target("postgresql", host, mapping_int(info.port), info.dbname or None)
        connection.__dict__[_TARGET] = target
    return target


def _statement(cursor: Any, query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    return str(query.as_string(cursor))  # psycopg.sql.Composable


def _begin(cursor: Any, query: Any) -> DbCall | None:
    if inside():
        return None
    try:
        return DbCall.begin(_target(cursor.connection), Operation.of_sql(_statement(cursor, query)))
    except Exception as exc:  # noqa: BLE001
        report(exc)
        return None


def _wrap_sync(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced(original, lambda self, query, *args, **kwargs: _begin(self, query))


def _wrap_async(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced_async(original, lambda self, query, *args, **kwargs: _begin(self, query))


def _targets() -> list[tuple[type, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
    import psycopg

    return [(psycopg.Cursor, name, _wrap_sync) for name in ("execute", "executemany")] + [
        (psycopg.AsyncCursor, name, _wrap_async) for name in ("execute", "executemany")]


def instrument() -> None:
    """Wrap the cursors' execute and executemany. Idempotent."""
    for cls, name, wrap in _targets():
        wrap_method(cls, name, wrap)


def uninstrument() -> None:
    if LIBRARY not in sys.modules:
        return
    for cls, name, _ in _targets():
        unwrap_method(cls, name)
