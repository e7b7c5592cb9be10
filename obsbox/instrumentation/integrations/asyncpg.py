"""asyncpg: a connection's execute, executemany, fetch, fetchrow, fetchval and fetchmany as CLIENT spans.

>>> from obsbox.instrumentation.integrations import asyncpg as asyncpg_integration
>>> asyncpg_integration.instrument()   # configure() does this when asyncpg is installed    # doctest: +SKIP

`Pool` methods acquire a connection and call these, so they are covered. The statement text is analysed and
sanitized; the arguments are never read. server.address/server.port come from the address the connection was
made to, db.namespace from its database. Not covered: `cursor()`, `copy_*`, prepared statements' own methods.
A statement that SQLAlchemy already records is not recorded twice.
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
    inside,
    mapping_int,
    traced_async,
)
from obsbox.instrumentation.integrations._patch import unwrap_method, wrap_method

__all__ = ["DISTRIBUTION", "LIBRARY", "SUPPORTED", "instrument", "uninstrument"]

LIBRARY = "asyncpg"
DISTRIBUTION = "asyncpg"
SUPPORTED = ("0.27", "1")
_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany")

# asyncpg's Connection has __slots__: targets are kept by connection (weakly, the connection may go any time).
_targets: Any = None


def _target(connection: Any) -> Target:
    target: Target | None = _targets.get(connection)
    if target is None:
        addr = connection._addr
        host, port = (addr[0], mapping_int(addr[1])) if isinstance(addr, tuple) else (str(addr), None)
        target = Target("postgresql", host, port, getattr(connection._params, "database", None) or None)
        _targets[connection] = target
    return target


def _begin(self: Any, query: Any, *args: Any, **kwargs: Any) -> DbCall | None:
    if inside():
        return None
    try:
        return DbCall.begin(_target(self), Operation.of_sql(query if isinstance(query, str) else str(query)))
    except Exception as exc:  # noqa: BLE001
        report(exc)
        return None


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced_async(original, _begin)


def instrument() -> None:
    """Wrap the Connection's query methods. Idempotent."""
    global _targets
    import weakref

    from asyncpg.connection import Connection

    if _targets is None:
        _targets = weakref.WeakKeyDictionary()
    for name in _METHODS:
        wrap_method(Connection, name, _wrap)


def uninstrument() -> None:
    if LIBRARY not in sys.modules:
        return
    from asyncpg.connection import Connection

    for name in _METHODS:
        unwrap_method(Connection, name)
