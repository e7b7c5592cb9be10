"""One HTTP server request's telemetry, shared by the ASGI, WSGI and Django middleware.

>>> shared = [request_attributes("GET", "http", "example.com", 80, "10.0.0.7", "curl/8", "1.1"), paths["/items/1"]]
>>> request = ServerRequest.begin("GET", "http", shared, None, None)                # doctest: +SKIP
>>> ...                                                              # the app runs  # doctest: +SKIP
>>> request.finish("/items/{item_id}", 200, None)                                  # doctest: +SKIP

`begin` starts the SERVER span (named after the method; the route is known only once the framework has routed),
makes it current and counts the request as active; `finish` names the span `METHOD route`, records
`http.server.request.duration` with the span as exemplar and ends the span. Everything here follows the stable HTTP
semantic conventions. A request's attributes come in shared blocks (SharedAttributes): what the connection and
the request line give (method, host, client, user agent), the path, then the route and status. Each distinct block
is built and encoded once and kept in a bounded table, so a request neither builds nor encodes them again. Each
step guards itself: an error in telemetry is reported once and swallowed, so the application never sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any, TypeVar

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode

from obsbox.instrumentation import _runtime
from obsbox.instrumentation._encode import SharedAttributes
from obsbox.instrumentation._interned import Interned
from obsbox.instrumentation._metrics import AttributeSet
from obsbox.instrumentation._runtime import AttributeValue, Runtime
from obsbox.instrumentation._tracer import FullStartTracer, attach_span, detach_span
from obsbox.instrumentation._tracer import Span as LeanSpan
from obsbox.instrumentation._tracer import Tracer as LeanTracer

KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"})
DEFAULT_EXCLUDED_PATHS = frozenset({"/health", "/healthz", "/ready", "/readyz", "/livez", "/metrics"})
# Marks a request (ASGI scope, WSGI environ) already handled by an obsbox middleware further out: the inner one
# then stays out of the way, so instrumenting twice never doubles spans.
REQUEST_KEY = "obsbox.request"
# Where framework hooks leave the matched route template for the middleware to pick up.
ROUTE_KEY = "obsbox.route"
# Where framework hooks leave an exception the framework turned into a 500 response itself (for error.type).
EXCEPTION_KEY = "obsbox.exception"
# An exception that ended a request carries that request's span context here, so the server's own log of it
# ("Exception in ASGI application", after the span has ended and is no longer current) is correlated too.
EXCEPTION_SPAN_CONTEXT = "__obsbox_span_context__"

_log = logging.getLogger("obsbox")
R = TypeVar("R", bound="ServerRequest")
# A request without (valid) trace context starts a new trace, whatever span happens to be current.
ROOT_CONTEXT = Context()
telemetry_errors = 0  # telemetry failures swallowed on the request path since start


def report(exc: BaseException) -> None:
    """Count a telemetry failure; log the first one (with its traceback) and stay quiet after that."""
    global telemetry_errors
    telemetry_errors += 1
    if telemetry_errors == 1:
        _log.warning("obsbox: telemetry failed on the request path; the request was served without it "
                     "(later failures are counted, not logged)", exc_info=exc)


def error_type(exc: BaseException) -> str:
    """`error.type` for an exception: its qualified class name (builtins unqualified), per the conventions."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def mark_error(span: Span, error: str, exc: BaseException | None) -> None:
    """An HTTP span that failed: `error.type`, status ERROR, and the exception as an event when there is one."""
    span.set_attribute("error.type", error)
    if exc is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    else:
        span.set_status(Status(StatusCode.ERROR))


EarlyRoute = Callable[[Any], "str | None"]  # the route a request will match, from its scope or environ


def _early(early_route: EarlyRoute | None, carrier: Any) -> str | None:
    if early_route is None:
        return None
    try:
        return early_route(carrier)
    except Exception as exc:  # the span starts without it; finish() still names the route
        report(exc)
        return None


def _merged(shared: list[SharedAttributes], attributes: dict[str, AttributeValue] | None
            ) -> dict[str, AttributeValue]:
    merged: dict[str, AttributeValue] = {}
    for block in shared:
        merged.update(block)
    merged.update(attributes or ())
    return merged


def normalise_method(method: str) -> str:
    return method if method in KNOWN_METHODS else "_OTHER"


def _build_duration_attributes(key: tuple[str, str, str | None, int, str | None]) -> AttributeSet:
    method, scheme, route, status, error = key
    attrs: dict[str, AttributeValue] = {"http.request.method": method, "url.scheme": scheme}
    if route is not None:
        attrs["http.route"] = route
    if status:
        attrs["http.response.status_code"] = status
    if error is not None:
        attrs["error.type"] = error
    return AttributeSet(attrs)


def _span_name(key: tuple[str, str | None]) -> str:
    method, route = key
    verb = "HTTP" if method == "_OTHER" else method
    return verb if route is None else f"{verb} {route}"


Outcome = tuple[str, str, str | None, int, str | None]  # method, scheme, route, status code (0: none), error.type


def _outcome(key: Outcome) -> tuple[str, SharedAttributes, AttributeSet]:
    method, _scheme, route, status, _error = key
    span_attributes = SharedAttributes({"http.route": route, "http.response.status_code": status or None})
    return _span_names[(method, route)], span_attributes, _build_duration_attributes(key)


# What finish() adds for one outcome of a request (the span's name and attributes, the duration's attributes) repeats
# across requests (bounded: methods x schemes x routes x statuses x errors), so it is built once and shared;
# recorders may key on it but must not change it.
_outcomes: Interned[Outcome, tuple[str, SharedAttributes, AttributeSet]] = Interned(_outcome)
_active_attrs: Interned[tuple[str, str], AttributeSet] = Interned(
    lambda key: AttributeSet({"http.request.method": key[0], "url.scheme": key[1]})
)
_span_names: Interned[tuple[str, str | None], str] = Interned(_span_name)
# url.path, per distinct path; paths come from clients, so the table is bounded (full, it starts over).
paths: Interned[str, SharedAttributes] = Interned(lambda path: SharedAttributes({"url.path": path}), limit=4096,
                                                  size=lambda block: len(block.encoded), max_size=1024)


def span_name(method: str, route: str | None) -> str:
    """`{method} {route}`, `{method}` without a route; `HTTP` stands in for methods outside the known set."""
    return _span_names[(method, route)]


def request_attributes(
    raw_method: str, scheme: str, address: str, port: int | None, client: str | None, user_agent: str | None,
    version: str | None,
) -> SharedAttributes:
    """The attributes a request's method, connection and headers give (all but the path and query).

    >>> dict(request_attributes("PURGE", "http", "example.com", 80, None, "curl/8", "1.1"))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'http.request.method': '_OTHER', 'url.scheme': 'http', 'http.request.method_original': 'PURGE',
     'server.address': 'example.com', 'server.port': 80, 'user_agent.original': 'curl/8',
     'network.protocol.version': '1.1'}
    """
    method = normalise_method(raw_method)
    attrs: dict[str, AttributeValue | None] = {"http.request.method": method, "url.scheme": scheme}
    if method == "_OTHER":
        attrs["http.request.method_original"] = raw_method
    if address:
        attrs["server.address"] = address
        attrs["server.port"] = port
    attrs["client.address"] = client or None
    attrs["user_agent.original"] = user_agent
    attrs["network.protocol.version"] = version or None
    return SharedAttributes(attrs)


def split_host(host: str, scheme: str) -> tuple[str, int | None]:
    """`server.address` and `server.port` from a Host header (IPv6 brackets removed, default port by scheme).

    >>> split_host("[::1]:8080", "http"), split_host("example.com", "https")
    (('::1', 8080), ('example.com', 443))
    """
    port: int | None = None
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    else:
        address, sep, port_text = host.rpartition(":")
        if not sep:
            address = host
        elif port_text.isdigit():
            port = int(port_text)
        else:
            address = host
    if port is None:
        port = 443 if scheme in ("https", "wss") else 80 if scheme in ("http", "ws") else None
    return address, port


class ServerRequest:
    """The telemetry of one request in flight. Created by `begin`, closed by `finish` (idempotent) and `detach`."""

    __slots__ = ("runtime", "span", "token", "started", "method", "scheme", "status", "finished", "active")

    runtime: Runtime
    span: Span
    token: object
    started: float
    method: str
    scheme: str
    status: int
    finished: bool
    active: AttributeSet  # http.server.active_requests' attributes, counted up in begin and down in finish

    @classmethod
    def begin(
        cls: type[R],
        method: str,
        scheme: str,
        shared: list[SharedAttributes],
        attributes: dict[str, AttributeValue] | None,
        parent: Context | None,
        early_route: EarlyRoute | None = None,
        carrier: Any = None,
    ) -> R | None:
        """Start the span and make it current; None (after reporting) if telemetry itself failed.

        `shared`: the request's attribute blocks (a fresh list: `finish` adds to it); `attributes`: its others.
        `early_route(carrier)`: the route template the framework will match, asked before the span starts only
        when the tracer wants a span's attributes at its start (sampling rules, SDK on_start hooks).
        """
        try:
            self = cls()
            self.runtime = runtime = _runtime.current()
            self.method = method
            self.scheme = scheme
            self.status = 0
            self.finished = False
            if parent is None:
                parent = ROOT_CONTEXT
            name = "HTTP" if method == "_OTHER" else method
            tracer = runtime.tracer
            if type(tracer) is LeanTracer:
                self.span = span = tracer.start(name, parent, 2)  # 2: SERVER
                if type(span) is LeanSpan:
                    span.shared = shared
                    span.attributes = attributes
            elif isinstance(tracer, FullStartTracer):  # the sampler (rules) or an on_start hook reads attributes
                route = _early(early_route, carrier)
                if tracer.calls_on_start:  # a hook sees every attribute the span starts with
                    merged = _merged(shared, attributes)
                    if route is not None:
                        merged["http.route"] = route
                    self.span = span = tracer.start(name, parent, 2, merged)
                else:  # only the sampler reads them: what it decides on, then the shared blocks as above
                    decide = {"http.request.method": method} if route is None else {
                        "http.request.method": method, "http.route": route}
                    self.span = span = tracer.start(name, parent, 2, decide)
                    if type(span) is LeanSpan:
                        span.shared = shared
                        span.attributes = attributes
            else:  # the global OpenTelemetry API's tracer (before configure(), or with the SDK disabled)
                self.span = span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER,
                                                     attributes=_merged(shared, attributes))
            self.token = attach_span(span, parent)
            self.active = _active_attrs[(method, scheme)]
        except Exception as exc:  # never let telemetry break the request
            report(exc)
            return None
        try:
            runtime.server_active.begin(self)
        except Exception as exc:  # a broken recorder must not cost the span
            report(exc)
        self.started = perf_counter()
        return self

    def finish(self, route: str | None, status: int, exc: BaseException | None) -> None:
        """End the request: the span gets its final name, status code and error; the duration is recorded.

        5xx responses and exceptions are errors (span status ERROR and `error.type`); 4xx are not, on a server.
        """
        if self.finished:
            return
        self.finished = True
        elapsed = perf_counter() - self.started
        span = self.span
        try:
            if exc is not None:
                error: str | None = error_type(exc)
                if not status:
                    status = 500  # nothing was sent: the server (or an error middleware further out) answers 500
            elif status >= 500:
                error = str(status)
            elif not status:
                error = "incomplete_response"
            else:
                error = None
            name, span_attributes, duration_attributes = _outcomes[(self.method, self.scheme, route, status, error)]
            context: SpanContext
            if type(span) is LeanSpan:  # obsbox's span: set its fields directly
                context = span.context
                if not span.end_time:
                    if route is not None:
                        span.name = name
                    shared, others = span.shared, span.attributes
                    if shared is not None and (not others or others.keys().isdisjoint(span_attributes)):
                        shared.append(span_attributes)
                    else:
                        span.set_attributes(span_attributes)
            else:
                context = span.get_span_context()
                if span.is_recording():
                    if route is not None:
                        span.update_name(name)
                    span.set_attributes(span_attributes)
            if error is not None and span.is_recording():
                mark_error(span, error, exc)
            if exc is not None and not hasattr(exc, EXCEPTION_SPAN_CONTEXT):
                setattr(exc, EXCEPTION_SPAN_CONTEXT, context)  # the innermost request that saw it keeps it
            runtime = self.runtime
            runtime.server_duration.record(elapsed, duration_attributes, context)
            runtime.server_active.end(self)
        except Exception as failure:
            report(failure)
        finally:
            try:
                span.end()
            except Exception as failure:
                report(failure)

    def detach(self) -> None:
        """Restore the context that was current before `begin` (call from the same task/thread)."""
        try:
            detach_span(self.token)  # type: ignore[arg-type]
        except Exception as exc:
            report(exc)
