"""The ASGI server middleware: one SERVER span and the HTTP server metrics per request.

>>> from obsbox.instrumentation.asgi import ObsboxASGIMiddleware
>>> app = ObsboxASGIMiddleware(app)                       # doctest: +SKIP
>>> app = ObsboxASGIMiddleware(app, excluded_paths={"/ping"}, routes="starlette")   # doctest: +SKIP

Usually you call `obsbox.instrument(app)`, which picks the route source and installs this middleware for you.
Per HTTP request (websocket and lifespan pass straight through) it:

- continues the caller's trace from `traceparent`/`tracestate` (W3C) and makes its span current;
- names the span `METHOD route` once the framework has routed (just `METHOD` when no route matched) and records the
  stable HTTP semantic-convention attributes (`url.query` only after redaction; no headers besides User-Agent);
- records `http.server.request.duration` (seconds; method, scheme, route, status code, error type; the span as
  exemplar) when the last body chunk has been sent, so streaming responses are timed to their end, and keeps
  `http.server.active_requests` up to date;
- marks 5xx responses and exceptions as errors (`error.type`: the status code, or the exception's qualified class
  name); exceptions are recorded on the span and re-raised unchanged. 4xx responses are not server errors.

Paths in `excluded_paths` (default: /health, /healthz, /ready, /readyz, /livez, /metrics) produce no telemetry.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal

from obsbox.instrumentation._encode import SharedAttributes
from obsbox.instrumentation._interned import Interned
from obsbox.instrumentation._propagation import extract_context
from obsbox.instrumentation._redact import redact_query
from obsbox.instrumentation._routes import FASTAPI_SCOPE_KEY, fastapi_probe, starlette_route
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
from obsbox.instrumentation.logs import reclaim_server_loggers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RouteSource = Literal["fastapi", "starlette", "scope"]
_FASTAPI_MODULE = "fastapi.telemetry"

RequestKey = tuple[str, str, "bytes | None", Any, "str | None", "bytes | None", "str | None"]


def _request_block(key: RequestKey) -> SharedAttributes:
    raw_method, scheme, host, server, client, user_agent, version = key
    if host is not None:
        address, port = split_host(host.decode("latin-1"), scheme)
    else:
        address, port = (server[0], server[1]) if server else ("", None)
    return shared_request_attributes(raw_method, scheme, address, port, client,
                                     None if user_agent is None else user_agent.decode("latin-1"), version)


# Method, host, client, user agent and protocol repeat across requests: one block per distinct set. They come from
# clients, so the table is bounded (full, it starts over).
_request_blocks: Interned[RequestKey, SharedAttributes] = Interned(
    _request_block, limit=1024, size=lambda block: len(block.encoded), max_size=2048)


def _header_mapping(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}


def request_attributes(
    scope: Scope, scheme: str, host: bytes | None, user_agent: bytes | None
) -> tuple[list[SharedAttributes], dict[str, AttributeValue] | None]:
    """The span attributes known when the request arrives (`host`, `user_agent`: the raw header values, if any):
    the shared blocks (request, path) and the others (a redacted query), as `ServerRequest.begin` takes them."""
    client = scope.get("client")
    server = None if host is not None else scope.get("server")
    key = (
        scope["method"],
        scheme,
        host,
        tuple(server) if server else None,
        client[0] if client else None,
        user_agent,
        scope.get("http_version"),
    )
    shared = [_request_blocks[key], paths[scope["path"]]]
    query: bytes = scope.get("query_string", b"")
    return shared, {"url.query": redact_query(query.decode("latin-1"))} if query else None


class _Request(ServerRequest):
    """One request in flight: its telemetry, and the `send` the app is given, which notes the status and ends the
    request once the last body chunk is sent."""

    __slots__ = ("scope", "routes", "probe", "entry_root_path", "_send")

    scope: Scope
    routes: RouteSource
    probe: Any  # FastAPI's route reporter (see _routes.fastapi_probe), or None
    entry_root_path: str
    _send: Send

    def send(self, message: Message) -> Awaitable[None]:
        # Not a coroutine itself: every message but the last hands back the server's own awaitable, which saves
        # a coroutine per message; only the last body chunk is awaited here, to end the request once it is sent.
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            return self._send_last(message)
        return self._send(message)

    async def _send_last(self, message: Message) -> None:
        await self._send(message)
        if not self.finished:
            self.end(None)

    def end(self, exc: BaseException | None) -> None:
        """Finish with the route, the status sent and the exception (raised, or one the framework handled)."""
        if exc is None:
            handled = self.scope.get(EXCEPTION_KEY)
            if handled is not None and isinstance(handled, BaseException):
                exc = handled
        self.finish(self.route(), self.status, exc)

    def route(self) -> str | None:
        try:
            routes = self.routes
            if routes == "fastapi":
                route = self.probe.route if self.probe is not None else None
                if isinstance(route, str):
                    return route
            elif routes == "scope":
                value = self.scope.get(ROUTE_KEY)
                return value if isinstance(value, str) else None
            return starlette_route(self.scope, self.entry_root_path)
        except Exception as exc:
            report(exc)
            return None


def _flushing_at_shutdown(send: Send) -> Send:
    """The lifespan's `send`, exporting what is queued when the app reports its shutdown: uvicorn re-raises
    SIGTERM with the default handler after its graceful shutdown, so no exit hook would run after this."""

    async def send_and_flush(message: MutableMapping[str, Any]) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            from obsbox.instrumentation.setup import flush_before_exit

            flush_before_exit()
        await send(message)

    return send_and_flush


class ObsboxASGIMiddleware:
    """ASGI middleware producing one SERVER span and the HTTP server metrics per request (see the module doc).

    `routes` says where the route template comes from: "fastapi" (FastAPI reports it), "starlette"
    (`scope["route"]`, Starlette and older FastAPI), "scope" (a framework hook stores it under "obsbox.route",
    e.g. Django; plain ASGI apps have none). `early_route(scope)` tells the route before the app runs, for
    sampling rules (see _routes; `obsbox.instrument` passes the framework's).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_paths: Iterable[str] | None = None,
        routes: RouteSource = "starlette",
        early_route: EarlyRoute | None = None,
    ) -> None:
        self.app = app
        self.excluded_paths = frozenset(DEFAULT_EXCLUDED_PATHS if excluded_paths is None else excluded_paths)
        self.routes: RouteSource = routes
        self.early_route = early_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or REQUEST_KEY in scope:
            if scope["type"] == "lifespan":  # the server is starting the app: its logging is set up by now
                reclaim_server_loggers()
                await self.app(scope, receive, _flushing_at_shutdown(send))
                return
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        excluded = self.excluded_paths
        # Servers started with a root path (uvicorn --root-path) put it in front of `path`.
        root: str = scope.get("root_path", "")
        if path in excluded or (root and path.startswith(root) and path[len(root):] in excluded):
            await self.app(scope, receive, send)
            return
        request = self._begin(scope, send)
        if request is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, request.send)
        except BaseException as exc:
            if not request.finished:
                request.end(exc)
            raise
        finally:
            if not request.finished:  # apps that return without a complete body
                request.end(None)
            request.detach()
            scope.pop(REQUEST_KEY, None)
            if request.probe is not None:
                scope.pop(FASTAPI_SCOPE_KEY, None)

    def _begin(self, scope: Scope, send: Send) -> _Request | None:
        try:
            raw_headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
            method = normalise_method(scope["method"])
            scheme: str = scope.get("scheme", "http")
            # One pass over the header list for the five headers used; a later duplicate wins, as in a dict.
            traceparent = tracestate = baggage = host = user_agent = None
            for name, value in raw_headers:
                if name == b"host":
                    host = value
                elif name == b"user-agent":
                    user_agent = value
                elif name == b"traceparent":
                    traceparent = value
                elif name == b"tracestate":
                    tracestate = value
                elif name == b"baggage":
                    baggage = value
            parent = extract_context(
                traceparent.decode("latin-1") if traceparent is not None else None,
                tracestate.decode("latin-1") if tracestate is not None else None,
                baggage.decode("latin-1") if baggage is not None else None,
                raw_headers,
                _header_mapping,
            )
            shared, attributes = request_attributes(scope, scheme, host, user_agent)
        except Exception as exc:
            report(exc)
            return None
        request = _Request.begin(method, scheme, shared, attributes, parent, self.early_route, scope)
        if request is None:
            return None
        try:
            routes = self.routes
            request.scope = scope
            request.routes = routes
            request._send = send
            request.entry_root_path = scope.get("root_path", "")
            # The probe also tells FastAPI apps further in (mounted ones too) that this request's telemetry is
            # taken: outside FastAPI mode it only keeps their own telemetry quiet, and routes come from the scope.
            if routes == "fastapi" or (routes == "starlette" and _FASTAPI_MODULE in sys.modules):
                request.probe = probe = fastapi_probe()
                if probe is not None:
                    scope[FASTAPI_SCOPE_KEY] = probe
            else:
                request.probe = None
            scope[REQUEST_KEY] = request
        except Exception as exc:
            report(exc)
            request.detach()
            return None
        return request
