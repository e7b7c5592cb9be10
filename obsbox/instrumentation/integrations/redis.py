"""redis-py: commands of `redis.Redis` and `redis.asyncio.Redis`, and their pipelines, as CLIENT spans.

>>> from obsbox.instrumentation.integrations import redis as redis_integration
>>> redis_integration.instrument()    # configure() does this when redis-py is installed    # doctest: +SKIP

Per the Redis conventions: db.system.name `redis`, db.operation.name the command (`GET`, `HSET`), db.namespace
the database index the client was created with (a later `SELECT` is not followed), server.address/server.port,
the span named `GET 0`. No key, value or argument is recorded — no db.query.text at all — so nothing a command
carries leaves the process, and the duration's labels are bounded by the commands used. A pipeline (or
MULTI/EXEC transaction) is one span: `BATCH GET` when its commands are alike, else `BATCH`, with
db.operation.batch.size. A failure sets error.type and, for the server's errors, db.response.status_code (the
error prefix: `WRONGTYPE`, `ERR`). Not covered: cluster clients.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from obsbox.instrumentation._server import report
from obsbox.instrumentation.integrations._db import (
    DbCall,
    Operation,
    Target,
    mapping_int,
    traced,
    traced_async,
)
from obsbox.instrumentation.integrations._patch import unwrap_method, wrap_method

__all__ = ["DISTRIBUTION", "LIBRARY", "SUPPORTED", "instrument", "uninstrument"]

LIBRARY = "redis"
DISTRIBUTION = "redis"
SUPPORTED = ("4.2", "9")
_TARGET = "_obsbox_target"
_PREFIX = re.compile(r"[A-Z]+")
_PREFIXED = re.compile(r"([A-Z]+) ")


def _target(client: Any) -> Target:
    target: Target | None = client.__dict__.get(_TARGET)
    if target is None:
        kwargs = client.connection_pool.connection_kwargs
        path = kwargs.get("path")
        if path:
            target = Target("redis", str(path), None, str(kwargs.get("db", 0)))
        else:
            target = Target("redis", kwargs.get("host") or None, mapping_int(kwargs.get("port")),
                            str(kwargs.get("db", 0)))
        client.__dict__[_TARGET] = target
    return target


def _command(name: Any) -> str:
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return str(name)


def _status(exc: BaseException) -> str | None:
    """The server's error prefix (`WRONGTYPE Operation against a key ...` → WRONGTYPE) for its errors only."""
    from redis.exceptions import ResponseError

    if not isinstance(exc, ResponseError):
        return None
    code = getattr(exc, "status_code", None)  # redis-py strips known prefixes off the message and keeps them here
    if isinstance(code, str) and _PREFIX.fullmatch(code):
        return code
    match = _PREFIXED.match(str(exc.args[0])) if exc.args else None  # a prefix redis-py does not know
    return match.group(1) if match else None


def _begin(client: Any, operation: Callable[[], Operation]) -> DbCall | None:
    try:
        return DbCall.begin(_target(client), operation())
    except Exception as exc:  # noqa: BLE001
        report(exc)
        return None


def _finish(call: DbCall, exc: BaseException | None) -> None:
    try:
        status = _status(exc) if exc is not None else None
    except Exception:  # noqa: BLE001
        status = None
    call.finish(exc, status)


def _batch(pipeline: Any) -> Operation:
    return Operation.of_batch(tuple(_command(args[0]) for args, _ in pipeline.command_stack if args))


def _command_call(client: Any, *args: Any, **options: Any) -> DbCall | None:
    return _begin(client, lambda: Operation.of_command(_command(args[0]))) if args else None


def _pipeline_call(pipeline: Any, *args: Any, **kwargs: Any) -> DbCall | None:
    return _begin(pipeline, lambda: _batch(pipeline)) if pipeline.command_stack else None


def _wrap_command(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced(original, _command_call, _finish)


def _wrap_command_async(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced_async(original, _command_call, _finish)


def _wrap_pipeline(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced(original, _pipeline_call, _finish)


def _wrap_pipeline_async(original: Callable[..., Any]) -> Callable[..., Any]:
    return traced_async(original, _pipeline_call, _finish)


def _targets() -> list[tuple[type, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
    import redis.asyncio.client
    import redis.client

    return [
        (redis.client.Redis, "execute_command", _wrap_command),
        (redis.client.Pipeline, "execute", _wrap_pipeline),
        (redis.asyncio.client.Redis, "execute_command", _wrap_command_async),
        (redis.asyncio.client.Pipeline, "execute", _wrap_pipeline_async),
    ]


def instrument() -> None:
    """Wrap the clients' execute_command and the pipelines' execute. Idempotent."""
    for cls, name, wrap in _targets():
        wrap_method(cls, name, wrap)


def uninstrument() -> None:
    if LIBRARY not in sys.modules:
        return
    for cls, name, _ in _targets():
        unwrap_method(cls, name)
