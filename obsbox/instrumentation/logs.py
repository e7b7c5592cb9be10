"""The obsbox logger: loguru, with every record inside a span carrying its trace and exported over OTLP.

>>> from obsbox import logger
>>> logger.info("order placed", order_id=42)   # doctest: +SKIP

`logger` is loguru's logger, usable before `obsbox.configure()`. configure() adds:

- trace correlation: a record made inside a span gets `trace_id` and `span_id` (32 and 16 lowercase hex digits,
  as Loki and Grafana expect) in its `extra`;
- the console sink: loguru's readable format plus the first 8 digits of the trace id;
- the export sink: each record becomes an OTLP log record — severity number and text, the message as body, the
  keyword fields (`extra`) as attributes, the trace and span ids on the record, and for exceptions
  exception.type / exception.message / exception.stacktrace;
- stdlib `logging` (libraries, uvicorn, gunicorn) routed into loguru, so those records take the same path, their
  `extra=` fields included (plain values: str, numbers, bools, lists of those, dates, UUIDs, decimals, enums, paths);
- the log of an exception that ended a request (uvicorn's "Exception in ASGI application", gunicorn's "Error
  handling request"), written once the request's span is no longer current, carries that request's trace and span.

Fields named like password, token, secret, api_key, authorization or cookie are exported as "REDACTED", at any
depth (a dict or a headers object logged as a field), and their values are taken out of the message too
(`logger.info("token {token}", token=t)`); query strings, URL credentials and the Werkzeug debugger's PIN in
messages, access-log lines and exceptions are redacted like the spans' `url.query`.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import enum
import logging
import sys
import traceback
import uuid
from collections.abc import Callable, Mapping
from pathlib import PurePath
from types import FrameType
from typing import TYPE_CHECKING, Any

from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from obsbox.instrumentation._encode import encode_scope
from obsbox.instrumentation._interned import Interned
from obsbox.instrumentation._pipeline import LogItem
from obsbox.instrumentation._redact import redact_text
from obsbox.instrumentation._server import EXCEPTION_SPAN_CONTEXT

if TYPE_CHECKING:
    from loguru import Message, Record

    from obsbox.instrumentation.settings import Settings

__all__ = ["InterceptHandler", "logger"]

REDACTED = "REDACTED"
_SENSITIVE = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "cookie",
              "credential", "private_key", "session")
# Field names are the application's, usually few; still bounded.
_sensitive_cache: Interned[str, bool] = Interned(
    lambda name: any(marker in name.lower().replace("-", "_") for marker in _SENSITIVE)
)

# loguru level number → OpenTelemetry SeverityNumber (the first of each range: TRACE=1 ... FATAL=21)
_SEVERITY = ((50, 21), (40, 17), (30, 13), (25, 11), (20, 9), (10, 5), (0, 1))
_SCOPE = encode_scope("obsbox.logger")
_get_current_span = trace.get_current_span

_console_id: int | None = None
_export_id: int | None = None
_default_removed = False
_intercept_installed = False


def is_sensitive(name: str) -> bool:
    """Whether a log field called `name` may carry a secret (case-insensitive, '-' read as '_')."""
    return _sensitive_cache[name]


def severity_number(level_no: int) -> int:
    for threshold, number in _SEVERITY:
        if level_no >= threshold:
            return number
    return 1


def _patch(record: Record) -> None:
    """Put the current span's ids into every record (unless the caller bound its own)."""
    extra = record["extra"]
    if "trace_id" in extra:
        return
    ctx = _get_current_span().get_span_context()
    if not ctx.is_valid:
        # A server logging the exception that ended a request, once the request's span is no longer current.
        exc = record["exception"]
        kept = getattr(exc.value, EXCEPTION_SPAN_CONTEXT, None) if exc is not None else None
        if not isinstance(kept, SpanContext) or not kept.is_valid:
            return
        ctx = kept
    extra["trace_id"] = format(ctx.trace_id, "032x")
    extra["span_id"] = format(ctx.span_id, "016x")


def _console_format(record: Record) -> str:
    trace_part = " <magenta>[{extra[trace_id]:.8}]</magenta>" if "trace_id" in record["extra"] else ""
    return (
        "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level>" + trace_part +
        " | <cyan>{name}</cyan>:<cyan>{function}</cyan>:<cyan>{line}</cyan> - <level>{message}</level>\n{exception}"
    )


def _attribute(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
        return list(value)
    return str(redacted(value))


def _items(value: Any) -> Any:
    """The (key, value) pairs of a mapping or of a headers object (Starlette's, Werkzeug's, http.client's)."""
    if isinstance(value, Mapping):
        return value.items()
    items = getattr(value, "items", None)
    return items() if callable(items) else None


def redacted(value: Any, depth: int = 0) -> Any:
    """`value` with the values of sensitive keys replaced by REDACTED at any depth (dicts, headers objects, lists).

    >>> redacted({"user": "ann", "creds": {"password": "p"}, "headers": [("Cookie", "c")]})
    {'user': 'ann', 'creds': {'password': 'REDACTED'}, 'headers': [('Cookie', 'REDACTED')]}
    """
    if depth > 8 or isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    try:
        pairs = _items(value)
        if pairs is not None:
            return {k: REDACTED if isinstance(k, str) and is_sensitive(k) else redacted(v, depth + 1)
                    for k, v in pairs}
        if isinstance(value, (list, tuple, set, frozenset)):
            if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
                    and is_sensitive(value[0])):  # a (name, value) header pair
                return (value[0], REDACTED)
            return [redacted(v, depth + 1) for v in value]
    except Exception:  # noqa: BLE001 - an object whose items() misbehaves: shown without its contents
        return f"<{type(value).__name__}>"
    return value


def _sensitive_values(extra: Mapping[str, Any], depth: int = 0) -> list[str]:
    """The text of every value under a sensitive key, at any depth (to take out of the message too)."""
    found: list[str] = []
    if depth > 8:
        return found
    for key, value in extra.items():
        if isinstance(key, str) and is_sensitive(key):
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                found.append(str(value))
            elif isinstance(value, Mapping):
                found += [str(v) for v in value.values() if isinstance(v, (str, int, float))]
        elif isinstance(value, Mapping):
            found += _sensitive_values(value, depth + 1)
    return [text for text in found if len(text) >= 3]  # "1" or "" would blank unrelated text


def _redact_message(message: str, extra: Mapping[str, Any], has_sensitive: bool) -> str:
    """The message without the secrets the record's fields carry (`"token {token}"`) or its URLs quote."""
    if has_sensitive or any(isinstance(v, Mapping) for v in extra.values()):
        for secret in sorted(_sensitive_values(extra), key=len, reverse=True):
            message = message.replace(secret, REDACTED)
    return redact_text(message)


def _to_item(record: Record) -> LogItem:
    extra = record["extra"]
    attributes: dict[str, Any] = {}
    trace_id = span_id = flags = 0
    has_sensitive = False
    for key, value in extra.items():
        if key == "trace_id" or key == "span_id":
            continue
        if is_sensitive(key):
            attributes[key] = REDACTED
            has_sensitive = True
        else:
            attributes[key] = _attribute(value)
    tid, sid = extra.get("trace_id"), extra.get("span_id")
    if isinstance(tid, str) and isinstance(sid, str):
        try:
            trace_id, span_id = int(tid, 16), int(sid, 16)
            ctx = _get_current_span().get_span_context()
            flags = int(ctx.trace_flags) if ctx.trace_id == trace_id else 1
        except ValueError:
            attributes["trace_id"], attributes["span_id"] = tid, sid
    attributes["code.function.name"] = record["function"]
    attributes["code.file.path"] = record["file"].path
    attributes["code.line.number"] = record["line"]
    attributes.setdefault("logger.name", record["name"] or "")
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        attributes["exception.type"] = exc.type.__qualname__
        attributes["exception.message"] = redact_text(str(exc.value))
        attributes["exception.stacktrace"] = redact_text(
            "".join(traceback.format_exception(exc.type, exc.value, exc.traceback)))
    level = record["level"]
    ts = record["time"].timestamp()
    message = _redact_message(record["message"], extra, has_sensitive)
    return LogItem(int(ts * 1e9), severity_number(level.no), level.name, message, attributes,
                   trace_id, span_id, flags, _SCOPE)


def redact_item(item: LogItem) -> LogItem:
    """A record from the OpenTelemetry logs API, redacted as the obsbox logger's records are."""
    attributes = item.attributes
    if attributes:
        has_sensitive = any(isinstance(k, str) and is_sensitive(k) for k in attributes)
        if isinstance(item.body, str):
            item.body = _redact_message(item.body, attributes, has_sensitive)
        item.attributes = {k: REDACTED if isinstance(k, str) and is_sensitive(k)
                           else redact_text(v) if isinstance(v, str) else redacted(v)
                           for k, v in attributes.items()}
    elif isinstance(item.body, str):
        item.body = redact_text(item.body)
    elif item.body is not None:
        item.body = redacted(item.body)
    return item


def _export_sink(offer: Callable[[LogItem], None]) -> Callable[[Message], None]:
    def sink(message: Message) -> None:
        with contextlib.suppress(Exception):  # a log call must never fail because of export
            offer(_to_item(message.record))

    return sink


class InterceptHandler(logging.Handler):
    """Routes stdlib `logging` records into loguru, keeping their level, logger name and caller."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller (the stdlib's handlers don't)
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - "%d" with a str, too few arguments: the text as written
            message = str(record.msg)
        # Find the caller outside the logging module so loguru reports the library's own function and line.
        frame: FrameType | None = logging.currentframe()
        depth = 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename in (logging.__file__, __file__)):
            frame = frame.f_back
            depth += 1
        fields = _extra_fields(record)
        if record.name != "root":
            fields["logger.name"] = record.name
        bound = logger.bind(**fields) if fields else logger
        bound.opt(depth=depth, exception=record.exc_info).log(level, message)


# What every LogRecord has; anything else on a record came from the call's `extra=`. uvicorn's `color_message` is
# the message again with colour codes, not a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}
# Values kept as fields besides str/int/float/bool (and lists of those): data with a faithful text form. Other
# objects (Django's `request`, sockets) are left out: they are not fields, and their text may carry a raw URL.
_TEXT_VALUES = (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, uuid.UUID, enum.Enum, PurePath)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a stdlib record (redacted on export by name, as obsbox.logger's fields are)."""
    fields: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if name in _RECORD_ATTRIBUTES:
            continue
        if isinstance(value, (str, int, float, bool, *_TEXT_VALUES)) or (
                isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value)):
            fields[name] = value
    return fields


class _LenientMessage(str):
    """A message whose `format()` falls back to the text as written when it does not fit the arguments.

    loguru formats the message with the call's arguments whenever there are any, keyword fields included, so
    `logger.info('payload {"a": 1}', user="u")` raised KeyError in the application.
    """

    __slots__ = ()

    def format(self, *args: Any, **kwargs: Any) -> str:
        try:
            return str.format(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - KeyError, IndexError, ValueError, AttributeError, TypeError...
            return str(self)


def _lenient_formatting() -> None:
    """Make loguru's logger format leniently (idempotent); the only change to loguru obsbox makes."""
    from loguru import _logger

    log: Callable[..., None] = _logger.Logger._log
    if getattr(log, "_obsbox_lenient", False):
        return

    def _log(self: Any, level: Any, from_decorator: bool, options: Any, message: Any, args: Any,
             kwargs: Any) -> None:
        if (args or kwargs) and type(message) is str:
            message = _LenientMessage(message)
        # options[1] is the depth of the caller loguru reports; this wrapper is one frame more to skip.
        log(self, level, from_decorator, (options[0], options[1] + 1, *options[2:]), message, args, kwargs)

    _log._obsbox_lenient = True  # type: ignore[attr-defined]
    _logger.Logger._log = _log  # type: ignore[method-assign]


_lenient_formatting()


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time of the write (test captures, redirections come and go)."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())


_STDERR = _CurrentStderr()

_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")


def route_stdlib_logging(level: str) -> None:
    """Send stdlib logging (root and the servers' own loggers) through loguru (idempotent)."""
    global _intercept_installed
    root = logging.getLogger()
    if not any(isinstance(h, InterceptHandler) for h in root.handlers):
        root.addHandler(InterceptHandler())
    stdlib_level = logging.getLevelName(level if level not in ("TRACE", "SUCCESS") else "DEBUG")
    if isinstance(stdlib_level, int) and (root.level == logging.WARNING or not _intercept_installed):
        root.setLevel(stdlib_level)
    _claim_server_loggers()
    _intercept_installed = True


def reclaim_server_loggers() -> None:
    """Route the servers' loggers again if a server set them up after `obsbox.configure()` (no-op otherwise).

    `uvicorn.run(app)` (and gunicorn's UvicornWorker) give uvicorn's loggers their own handlers and stop them
    propagating once the app module, and the `configure()` in it, has been imported; the ASGI middleware calls
    this when the server starts the app (the lifespan), so "Application startup complete." and the access log
    are exported like every other record.
    """
    if _intercept_installed:
        _claim_server_loggers()


def _claim_server_loggers() -> None:
    for name in _ROUTED_LOGGERS:
        lg = logging.getLogger(name)
        if not lg.handlers and not lg.propagate:
            continue  # switched off by the server (uvicorn's access_log=False, --no-access-log): it stays off
        lg.handlers = [h for h in lg.handlers if isinstance(h, InterceptHandler)]
        lg.propagate = True


def configure_console(settings: Settings) -> None:
    """(Re)install the console sink and the trace patcher per the settings."""
    global _console_id, _default_removed
    logger.configure(patcher=_patch)
    if not _default_removed:
        with contextlib.suppress(ValueError):
            logger.remove(0)  # loguru's default stderr sink: ours replaces it
        _default_removed = True
    if _console_id is not None:
        _remove(_console_id)
        _console_id = None
    if settings.logs.console:
        _console_id = logger.add(_STDERR, level=settings.logs.log_level, format=_console_format, colorize=None)
    route_stdlib_logging(settings.logs.log_level)


def attach_export(offer: Callable[[LogItem], None], level: str) -> None:
    """Export every record at `level` or above through `offer` (replacing a previous export sink)."""
    global _export_id
    detach_export()
    _export_id = logger.add(_export_sink(offer), level=level, format="{message}", catch=True)


def detach_export() -> None:
    global _export_id
    if _export_id is not None:
        _remove(_export_id)
        _export_id = None


def _remove(handler_id: int) -> None:
    with contextlib.suppress(ValueError):
        logger.remove(handler_id)
