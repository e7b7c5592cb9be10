"""The WSGI server middleware: one SERVER span and the HTTP server metrics per request.

>>> from obsbox.instrumentation.wsgi import ObsboxWSGIMiddleware
>>> app.wsgi_app = ObsboxWSGIMiddleware(app.wsgi_app)      # doctest: +SKIP

Usually you call `obsbox.instrument(app)`, which also installs the Flask or Django hook that reports the matched
route template. Behaviour is that of the ASGI middleware (see obsbox.instrumentation.asgi): W3C trace context
continued, span `METHOD route`, stable HTTP semantic-convention attributes, `http.server.request.duration` and
`http.server.active_requests`, 5xx and exceptions as errors, excluded health/metrics paths. The request ends when
the server has taken the whole response body, or closes it if sooner, so streamed bodies are timed to their end;
a client that goes away mid-body ends it then, without an error. The span is current while the application
callable runs; a streaming body generated later, during iteration, runs outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from types import TracebackType
from typing import Any

from obsbox.instrumentation._encode import SharedAttributes
from obsbox.instrumentation._interned import Interned
from obsbox.instrumentation._propagation import extract_context
from obsbox.instrumentation._redact import redact_query
from obsbox.instrumentation._runtime import AttributeValue
from obsbox.instrumentation._server import (
    DEFAULT_EXCLUDED_PATHS,
    EXCEPTION_KEY,
    REQUEST_KEY,
    ROUTE_KEY,
    EarlyRoute,
    ServerRequest,
    normalise_method,
    paths,
    report,
    split_host,
)
from obsbox.instrumentation._server import request_attributes as shared_request_attributes

Environ = MutableMapping[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

EnvironKey = tuple[Any, str, Any, Any, Any, Any, Any, Any]


def _request_block(key: EnvironKey) -> SharedAttributes:
    raw_method, scheme, host, server_name, server_port, client, user_agent, protocol = key
    if host is not None:
        address, port = split_host(host, scheme)
    elif server_name:
        address, port = server_name, int(server_port) if server_port and str(server_port).isdigit() else None
    else:
        address, port = "", None
    version = protocol[5:] if isinstance(protocol, str) and protocol.startswith("HTTP/") else None
    return shared_request_attributes(raw_method, scheme, address, port, client or None, user_agent, version)


# Method, host, client, user agent and protocol repeat across requests: one block per distinct set. They come from
# clients, so the table is bounded (full, it starts over).
_request_blocks: Interned[EnvironKey, SharedAttributes] = Interned(_request_block, limit=1024)


def _wsgi_text(value: str) -> str:
    """PEP 3333 strings are bytes decoded as latin-1; URLs are UTF-8."""
    return value if value.isascii() else value.encode("latin-1").decode("utf-8", "replace")


def _header_mapping(environ: Mapping[str, Any]) -> dict[str, str]:
    return {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}


def environ_attributes(
    environ: Mapping[str, Any], scheme: str
) -> tuple[list[SharedAttributes], dict[str, AttributeValue] | None]:
    """The span attributes known when the request arrives: the shared blocks (request, path) and the others (a
    redacted query), as `ServerRequest.begin` takes them."""
    get = environ.get
    host = get("HTTP_HOST")
    key = (
        get("REQUEST_METHOD", "GET"),
        scheme,
        host,
        None if host is not None else get("SERVER_NAME"),
        None if host is not None else get("SERVER_PORT"),
        get("REMOTE_ADDR"),
        get("HTTP_USER_AGENT"),
        get("SERVER_PROTOCOL"),
    )
    shared = [_request_blocks[key], paths[_wsgi_text(get("PATH_INFO") or "/")]]
    query = get("QUERY_STRING")
    return shared, {"url.query": redact_query(_wsgi_text(query))} if query else None


def begin_environ(environ: Mapping[str, Any], early_route: EarlyRoute | None = None) -> ServerRequest | None:
    """Start the telemetry of the request described by a WSGI environ (or Django's request.META); `early_route`:
    see ServerRequest.begin."""
    try:
        method = normalise_method(environ.get("REQUEST_METHOD", "GET"))
        scheme: str = environ.get("wsgi.url_scheme", "http")
        parent = extract_context(
            environ.get("HTTP_TRACEPARENT"),
            environ.get("HTTP_TRACESTATE"),
            environ.get("HTTP_BAGGAGE"),
            environ,
            _header_mapping,
        )
        shared, attributes = environ_attributes(environ, scheme)
    except Exception as exc:
        report(exc)
        return None
    return ServerRequest.begin(method, scheme, shared, attributes, parent, early_route, environ)


def _route(environ: Mapping[str, Any]) -> str | None:
    route = environ.get(ROUTE_KEY)
    return route if isinstance(route, str) else None


class _Exchange:
    """One request in flight: wraps start_response (for the status) and the body (to finish when it closes)."""

    __slots__ = ("request", "environ", "_start_response")

    def __init__(self, request: ServerRequest, environ: Environ, start_response: StartResponse) -> None:
        self.request = request
        self.environ = environ
        self._start_response = start_response

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
        try:
            self.request.status = int(status[:3])
        except Exception as exc:
            report(exc)
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def finish(self, exc: BaseException | None) -> None:
        request = self.request
        if not request.finished:
            if exc is None:
                handled = self.environ.get(EXCEPTION_KEY)
                exc = handled if isinstance(handled, BaseException) else None
            request.finish(_route(self.environ), request.status, exc)


class _Body:
    """The application's response body, finishing the request's telemetry when the server closes it."""

    __slots__ = ("_body", "_exchange")

    def __init__(self, body: Iterable[bytes], exchange: _Exchange) -> None:
        self._body = body
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except GeneratorExit:  # the server stopped iterating (the client went away): cut short, not failed
            self._exchange.finish(None)
            raise
        except BaseException as exc:
            self._exchange.finish(exc)
            raise
        # All of the body is with the server. Finish now rather than only at close(): a server may skip close()
        # when the connection drops (werkzeug's does, when reading what is left of the request hits a reset), and
        # the request would then stay in flight for ever, its span and duration lost.
        self._exchange.finish(None)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._exchange.finish(None)


class ObsboxWSGIMiddleware:
    """WSGI middleware producing one SERVER span and the HTTP server metrics per request (see the module doc).

    The route template is read from `environ["obsbox.route"]`, which the Flask and Django hooks installed by
    `obsbox.instrument` set; plain WSGI apps have none, and all their requests share one series.
    """

    def __init__(self, app: WSGIApp, *, excluded_paths: Iterable[str] | None = None,
                 early_route: EarlyRoute | None = None) -> None:
        self.app = app
        self.excluded_paths = frozenset(DEFAULT_EXCLUDED_PATHS if excluded_paths is None else excluded_paths)
        self.early_route = early_route  # the route before the app runs, for sampling rules (see _routes)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in self.excluded_paths or REQUEST_KEY in environ:
            return self.app(environ, start_response)
        request = begin_environ(environ, self.early_route)
        if request is None:
            return self.app(environ, start_response)
        environ[REQUEST_KEY] = request
        exchange = _Exchange(request, environ, start_response)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException as exc:
            exchange.finish(exc)
            raise
        finally:
            request.detach()
        if isinstance(body, list | tuple):
            # Already complete; returned as it is, so servers still see its length (Content-Length from len()).
            exchange.finish(None)
            return body
        return _Body(body, exchange)
