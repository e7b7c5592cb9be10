"""SQLAlchemy: every statement an Engine runs — Core, ORM, sync and asyncio engines — as one CLIENT span.

>>> from obsbox.instrumentation.integrations import sqlalchemy as sa_integration
>>> sa_integration.instrument()      # configure() does this when SQLAlchemy is installed    # doctest: +SKIP

Listens to the `Engine` class's `before_cursor_execute`, `after_cursor_execute` and `handle_error` events, so
every engine (an `AsyncEngine` runs its statements on a sync one) is covered, including engines created before
`instrument()`. The span and `db.client.operation.duration` come from `_db.DbCall`: the statement's summary as its
name, the sanitized statement, the dialect as `db.system.name`, the URL's host, port and database; the bound
parameters are never read. While SQLAlchemy records a statement, the DBAPI driver's own hook (psycopg, asyncpg)
stays silent, so one statement is one span.
"""

from __future__ import annotations

import sys
from typing import Any

from obsbox.instrumentation.integrations._db import DbCall, Operation, Target, outer, reset_outer

__all__ = ["DISTRIBUTION", "LIBRARY", "SUPPORTED", "instrument", "uninstrument"]

LIBRARY = "sqlalchemy"
DISTRIBUTION = "SQLAlchemy"
SUPPORTED = ("1.4", "3")

# Dialect name → db.system.name (stable database conventions).
_SYSTEMS = {
    "postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mariadb",
    "mssql": "microsoft.sql_server", "oracle": "oracle.db",
}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "microsoft.sql_server": 1433,
                  "oracle.db": 1521}
_CALL = "_obsbox_call"
_TARGET = "_obsbox_target"


# SQLAlchemy drivers that obsbox also hooks: only under these must the driver's hook be told to stay silent.
_HOOKED_DRIVERS = frozenset({"psycopg", "asyncpg"})  # dialect.driver (psycopg's async dialect too)


def _target(engine: Any) -> tuple[Target, bool]:
    """The engine's Target, and whether its driver has an obsbox hook of its own (built once per engine)."""
    found: tuple[Target, bool] | None = engine.__dict__.get(_TARGET)
    if found is None:
        url = engine.url
        system = _SYSTEMS.get(engine.dialect.name, "other_sql")
        if system == "sqlite":  # a file path or :memory:, no server
            target = Target(system)
        else:
            target = Target(system, url.host or None, url.port or _DEFAULT_PORTS.get(system), url.database or None)
        found = engine.__dict__[_TARGET] = (target, engine.dialect.driver in _HOOKED_DRIVERS)
    return found


def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    if context is None:
        return
    target, hooked = _target(conn.engine)
    call = DbCall.begin(target, Operation.of_sql(statement))
    if call is not None:
        context.__dict__[_CALL] = (call, outer() if hooked else None)


def _end(context: Any, exc: BaseException | None) -> None:
    pending = context.__dict__.pop(_CALL, None) if context is not None else None
    if pending is not None:
        call, token = pending
        if token is not None:
            reset_outer(token)
        call.finish(exc)


def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    _end(context, None)


def _error(exception_context: Any) -> None:
    _end(exception_context.execution_context, exception_context.original_exception)


_LISTENERS = (("before_cursor_execute", _before), ("after_cursor_execute", _after), ("handle_error", _error))


def instrument() -> None:
    """Listen to every Engine's statements. Idempotent."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    for name, listener in _LISTENERS:
        if not event.contains(Engine, name, listener):
            event.listen(Engine, name, listener)


def uninstrument() -> None:
    """Stop listening (nothing to do when SQLAlchemy was never imported)."""
    if LIBRARY not in sys.modules:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    for name, listener in _LISTENERS:
        if event.contains(Engine, name, listener):
            event.remove(Engine, name, listener)
