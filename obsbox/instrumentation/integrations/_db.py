"""One database or cache operation's telemetry: a CLIENT span and one `db.client.operation.duration` measurement.

>>> target = Target("postgresql", "db.internal", 5432, "shop")
>>> call = DbCall.begin(target, Operation.of_sql("SELECT * FROM items WHERE id = 42"))   # doctest: +SKIP
>>> ...                                                     # the driver runs the statement
>>> call.finish(None)                                        # or call.finish(exc) when it raised   # doctest: +SKIP

Per the stable database conventions: the span is named after `db.query.summary` (else `db.operation.name` and the
collection, else `db.system.name`) and carries db.system.name, db.namespace, db.operation.name,
db.collection.name, db.query.summary, the sanitized db.query.text (SQL only) and server.address/server.port.
The duration's attributes are the span's without the query text: bounded by the application's set of statements.
A failure sets `error.type` (the exception's class), `db.response.status_code` (SQLSTATE, when the driver says)
and the span's status — but never the exception's message: drivers quote the statement and the values
(`Key (password)=(...) already exists`, SQLAlchemy's `[parameters: ...]`), which must not leave the process.

Attribute blocks are built once per (target, operation) and shared by every span and measurement alike, as the
HTTP middleware does. Nested calls (SQLAlchemy over psycopg) record only the outer one: `outer()` marks the
context, and the drivers' hooks check `inside()`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import wraps
from time import perf_counter
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from obsbox.instrumentation import _runtime
from obsbox.instrumentation._encode import SharedAttributes
from obsbox.instrumentation._interned import Interned
from obsbox.instrumentation._metrics import AttributeSet
from obsbox.instrumentation._runtime import AttributeValue, Runtime
from obsbox.instrumentation._server import error_type, report
from obsbox.instrumentation._tracer import Span as LeanSpan
from obsbox.instrumentation._tracer import Tracer as LeanTracer
from obsbox.instrumentation.integrations._sql import analyse

__all__ = ["DbCall", "Operation", "Slow", "Target", "inside", "log_slow", "outer"]

# What OpenTelemetry's exporters set to keep their own calls out of the telemetry.
_SUPPRESS_KEY = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", "suppress_instrumentation")
_get_current = otel_context.get_current
_CLIENT = SpanKind.CLIENT._value_ + 1  # the OTLP number the lean tracer takes

# Set while an outer layer (SQLAlchemy) records an operation, so the driver below it does not record it again.
_outer: ContextVar[bool] = ContextVar("obsbox_db_outer", default=False)


def inside() -> bool:
    """Whether an outer layer already records the operation in progress."""
    return _outer.get()


def outer() -> Token[bool]:
    """Mark the context as recorded by an outer layer; reset with the token when the operation is done."""
    return _outer.set(True)


def reset_outer(token: Token[bool]) -> None:
    try:
        _outer.reset(token)
    except ValueError:  # reset from another context (a driver that moved the call to another task): clear it
        _outer.set(False)


# Targets and Operations are compared by identity (eq=False: hashing one is free, the request path looks them up in
# tables): each integration keeps one Target per engine, connection or client, and Operations are interned.
@dataclass(frozen=True, eq=False)
class Target:
    """Where operations go: the same for every operation on a connection."""

    system: str  # db.system.name: postgresql, sqlite, redis, ...
    address: str | None = None
    port: int | None = None
    namespace: str | None = None


@dataclass(frozen=True, eq=False)
class Operation:
    """What an operation is, as far as it may be told: never a literal, parameter, key or value."""

    name: str | None  # db.operation.name
    collection: str | None = None
    summary: str | None = None
    text: str | None = None  # sanitized db.query.text
    batch_size: int | None = None  # db.operation.batch.size (span only)

    @staticmethod
    def of_sql(statement: str) -> Operation:
        return _sql_operations[statement]

    @staticmethod
    def of_command(name: str) -> Operation:
        """A command-style operation (Redis): its name only."""
        return _commands[name]

    @staticmethod
    def of_batch(names: tuple[str, ...]) -> Operation:
        """Several commands sent at once (a Redis pipeline): `BATCH GET` when they are alike, else `BATCH`."""
        return _batches[names]


def _sql_operation(statement: str) -> Operation:
    info = analyse(statement)
    return Operation(info.operation, info.collection, info.summary, info.text)


_sql_operations: Interned[str, Operation] = Interned(_sql_operation, limit=2048,
                                                     size=lambda o: len(o.text or ""), max_size=4096)
_commands: Interned[str, Operation] = Interned(lambda name: Operation(name.upper()), limit=512)


def _batch(names: tuple[str, ...]) -> Operation:
    if len(names) == 1:
        return Operation.of_command(names[0])
    alike = {name.upper() for name in names}
    return Operation(f"BATCH {alike.pop()}" if len(alike) == 1 else "BATCH", batch_size=len(names))


_batches: Interned[tuple[str, ...], Operation] = Interned(_batch, limit=512)


def _span_name(target: Target, op: Operation) -> str:
    if op.summary:
        return op.summary
    if op.name:
        where = op.collection or target.namespace or (
            f"{target.address}:{target.port}" if target.address and target.port else target.address)
        return f"{op.name} {where}" if where else op.name
    return target.system


@dataclass(frozen=True)
class _Shape:
    """What every span and measurement of one (target, operation) shares."""

    name: str
    span_attributes: SharedAttributes
    merged: dict[str, AttributeValue]  # the same, for tracers that are not obsbox's


def _shape(key: tuple[Target, Operation]) -> _Shape:
    target, op = key
    attrs: dict[str, Any] = {
        "db.system.name": target.system,
        "db.namespace": target.namespace,
        "db.operation.name": op.name,
        "db.collection.name": op.collection,
        "db.query.summary": op.summary,
        "db.query.text": op.text,
        "server.address": target.address,
        "server.port": target.port,
        "db.operation.batch.size": op.batch_size,
    }
    block = SharedAttributes(attrs)
    return _Shape(_span_name(target, op), block, dict(block))


def _metric_attributes(key: tuple[Target, Operation, str | None, str | None]) -> AttributeSet:
    target, op, error, status = key
    attrs = {
        "db.system.name": target.system,
        "db.namespace": target.namespace,
        "db.operation.name": op.name,
        "db.collection.name": op.collection,
        "db.query.summary": op.summary,
        "server.address": target.address,
        "server.port": target.port,
        "db.response.status_code": status,
        "error.type": error,
    }
    return AttributeSet({k: v for k, v in attrs.items() if v is not None})


_shapes: Interned[tuple[Target, Operation], _Shape] = Interned(_shape, limit=4096)
_metric_attrs: Interned[tuple[Target, Operation, str | None, str | None], AttributeSet] = Interned(
    _metric_attributes, limit=4096)


def status_code_of(exc: BaseException) -> str | None:
    """`db.response.status_code`: the SQLSTATE psycopg and asyncpg put on their errors (None otherwise)."""
    code = getattr(exc, "sqlstate", None)
    if code is None:
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)  # SQLAlchemy wraps the driver's error
    if code is None:
        code = getattr(exc.__cause__, "sqlstate", None)  # Django raises its own, from the driver's
    return code if isinstance(code, str) else None


class Slow:
    """Operations at least `threshold` seconds long log one line (configure() sets it: slow_operation_threshold)."""

    threshold = 1.0


def log_slow(what: str, name: str, fields: dict[str, Any], elapsed: float, span: Span) -> None:
    """One WARNING line `slow {what}: {name} took 1.234 s` with `fields` (None values left out) and `duration_s`
    as attributes, in the trace of `span` (the operation's own span id)."""
    from opentelemetry import trace

    from obsbox.instrumentation.logs import logger

    token = otel_context.attach(trace.set_span_in_context(span))  # the line carries the operation's span id
    try:
        logger.bind(**{k: v for k, v in fields.items() if v is not None}, duration_s=round(elapsed, 6)).warning(
            "slow {}: {} took {:.3f} s", what, name, elapsed)
    finally:
        otel_context.detach(token)


def _log_slow(target: Target, op: Operation, elapsed: float, error: str | None, span: Span) -> None:
    fields = {"db.system.name": target.system, "db.operation.name": op.name, "db.query.summary": op.summary,
              "db.collection.name": op.collection, "server.address": target.address, "error.type": error}
    log_slow("database operation", op.summary or op.name or target.system, fields, elapsed, span)


class DbCall:
    """One operation in flight: `begin` before it runs, `finish` once (with the exception when it raised)."""

    __slots__ = ("runtime", "span", "target", "operation", "started")

    runtime: Runtime
    span: Span
    target: Target
    operation: Operation
    started: float

    @classmethod
    def begin(cls, target: Target, operation: Operation) -> DbCall | None:
        """Start the CLIENT span under the current one; None when instrumentation is suppressed or failed."""
        try:
            parent = _get_current()
            if parent.get(_SUPPRESS_KEY):
                return None
            self = cls()
            self.runtime = runtime = _runtime.current()
            self.target = target
            self.operation = operation
            shape = _shapes[(target, operation)]
            tracer = runtime.tracer
            if type(tracer) is LeanTracer:
                span = tracer.start(shape.name, parent, _CLIENT)
                if type(span) is LeanSpan:
                    span.shared = [shape.span_attributes]
            elif isinstance(tracer, LeanTracer):  # a sampler or on_start hook reads the start attributes
                span = tracer.start(shape.name, parent, _CLIENT, shape.merged)
            else:
                span = tracer.start_span(shape.name, parent, SpanKind.CLIENT, shape.merged)
            self.span = span
            self.started = perf_counter()
            return self
        except Exception as exc:  # noqa: BLE001 - never raise into the application
            report(exc)
            return None

    def finish(self, exc: BaseException | None, status: str | None = None) -> None:
        """`status`: db.response.status_code when the caller knows it (else the SQLSTATE of `exc`, if any)."""
        try:
            elapsed = perf_counter() - self.started
            span = self.span
            error = None
            if exc is not None:
                error = error_type(exc)
                if status is None:
                    status = status_code_of(exc)
                if span.is_recording():
                    span.set_attribute("error.type", error)
                    if status is not None:
                        span.set_attribute("db.response.status_code", status)
                    # The class only: a driver's message quotes the statement and its values.
                    span.add_event("exception", {"exception.type": error})
                    span.set_status(Status(StatusCode.ERROR, error))
            self.runtime.db_duration.record(
                elapsed, _metric_attrs[(self.target, self.operation, error, status)], span.get_span_context())
            if elapsed >= Slow.threshold:
                _log_slow(self.target, self.operation, elapsed, error, span)
            span.end()
        except Exception as failure:  # noqa: BLE001
            report(failure)


def _finish(call: DbCall, exc: BaseException | None) -> None:
    call.finish(exc)


def traced(original: Callable[..., Any], begin: Callable[..., DbCall | None],
           finish: Callable[[DbCall, BaseException | None], None] = _finish, *,
           covers_driver: bool = False) -> Callable[..., Any]:
    """`original` (a client method) wrapped in a DbCall: `begin` gets the method's own arguments (self first) and
    returns the call, or None to run the method untraced; `finish` ends it with the exception, if one was raised.
    `covers_driver`: the method runs a driver that has a hook of its own (Django's cursor over psycopg's), which stays
    silent while the method runs."""
    @wraps(original)
    def method(*args: Any, **kwargs: Any) -> Any:
        call = begin(*args, **kwargs)
        if call is None:
            return original(*args, **kwargs)
        token = _outer.set(True) if covers_driver else None
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            if token is not None:
                reset_outer(token)
            finish(call, exc)
            raise
        if token is not None:
            reset_outer(token)
        finish(call, None)
        return result

    return method


def traced_async(original: Callable[..., Any], begin: Callable[..., DbCall | None],
                 finish: Callable[[DbCall, BaseException | None], None] = _finish) -> Callable[..., Any]:
    """traced() for a coroutine method."""
    @wraps(original)
    async def method(*args: Any, **kwargs: Any) -> Any:
        call = begin(*args, **kwargs)
        if call is None:
            return await original(*args, **kwargs)
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            finish(call, exc)
            raise
        finish(call, None)
        return result

    return method


def mapping_int(value: Any) -> int | None:
    """A port as an int, whatever the driver keeps it as (str, int, None)."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def first_host(value: Any) -> str | None:
    """libpq allows several comma-separated hosts; the first is the one tried first."""
    if not value or not isinstance(value, str):
        return None
    return value.split(",")[0] or None


