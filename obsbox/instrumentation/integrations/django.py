"""Django's ORM: every statement a Django connection runs (querysets, `save()`, raw `connection.cursor()` calls,
migrations) as one CLIENT span, whatever the backend.

>>> from obsbox.instrumentation.integrations import django as django_integration
>>> django_integration.instrument()  # configure() does this when Django is installed          # doctest: +SKIP

Wraps `django.db.backends.utils.CursorWrapper.execute`/`executemany`, the one place every backend's statements
pass (the debug cursor calls them too), so connections opened before `instrument()` and in any thread are covered
with no signal to connect. The span and `db.client.operation.duration` come from `_db.DbCall`: the statement's
summary as its name, the sanitized statement, the backend's vendor as `db.system.name` (postgresql, sqlite, mysql,
oracle.db), and HOST, PORT and NAME of the connection's settings; the parameters are never read. While Django
records a statement, the driver's own hook (psycopg) stays silent, so one statement is one span. A statement that
is not a string (a `psycopg.sql.Composable` passed to a raw cursor) is left to the driver's hook.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from obsbox.instrumentation._server import report
from obsbox.instrumentation.integrations._db import DbCall, Operation, Target, mapping_int, traced
from obsbox.instrumentation.integrations._patch import unwrap_method, wrap_method

__all__ = ["DISTRIBUTION", "LIBRARY", "SUPPORTED", "instrument", "uninstrument"]

LIBRARY = "django"
DISTRIBUTION = "Django"
SUPPORTED = ("4.2", "7")

# connection.vendor → db.system.name (stable database conventions)
_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql", "oracle": "oracle.db"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "oracle.db": 1521}
_TARGET = "_obsbox_target"


def _target(db: Any) -> Target:
    target: Target | None = db.__dict__.get(_TARGET)
    if target is None:
        system = _SYSTEMS.get(db.vendor, "other_sql")
        if system == "sqlite":  # NAME is a file path or :memory:, there is no server
            target = Target(system)
        else:
            config = db.settings_dict
            host = config.get("HOST") or None
            if host is not None and host.startswith("/"):  # a Unix socket directory
                host = None
            target = Target(system, host, mapping_int(config.get("PORT")) or _DEFAULT_PORTS.get(system),
                            config.get("NAME") or None)
        db.__dict__[_TARGET] = target
    return target


def _begin(cursor: Any, sql: Any, *args: Any, **kwargs: Any) -> DbCall | None:
    if type(sql) is not str:
        return None
    try:
        return DbCall.begin(_target(cursor.db), Operation.of_sql(sql))
    except Exception as exc:  # noqa: BLE001
        report(exc)
        return None


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced(original, _begin, covers_driver=True)


def _cursor() -> type:
    from django.db.backends.utils import CursorWrapper

    cls: type = CursorWrapper
    return cls


def instrument() -> None:
    """Wrap CursorWrapper.execute and executemany. Idempotent."""
    cls = _cursor()
    for name in ("execute", "executemany"):
        wrap_method(cls, name, _wrap)


def uninstrument() -> None:
    if "django.db.backends.utils" not in sys.modules:
        return
    cls = _cursor()
    for name in ("execute", "executemany"):
        unwrap_method(cls, name)
