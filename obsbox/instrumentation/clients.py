"""Outgoing HTTP: CLIENT spans, trace context injected, `http.client.request.duration`, for httpx and requests.

>>> from obsbox.instrumentation.clients import instrument_http_clients, uninstrument_http_clients
>>> instrument_http_clients()      # configure() does this for you
['httpx', 'requests']
>>> uninstrument_http_clients()

Each request that leaves through httpx (`httpx.Client`, `httpx.AsyncClient`, the module functions: their default
transports) or requests (any `Session`, through `HTTPAdapter.send`) gets:

- a CLIENT span named after the method (`GET`; `HTTP` for non-standard methods), child of the current span, with
  http.request.method, server.address, server.port, url.full (credentials and secret query values REDACTED),
  http.response.status_code, network.protocol.version, and error.type + status ERROR for 4xx/5xx and failures;
- `traceparent` (and `tracestate`, baggage) headers, so the server continues the trace;
- one `http.client.request.duration` measurement (seconds, until the response headers arrive) with
  http.request.method, server.address, server.port, http.response.status_code, error.type.

Why not the contrib instrumentations: they emit the old metric names unless OTEL_SEMCONV_STABILITY_OPT_IN=http is
set in the environment, record through the SDK instruments (not obsbox's lean recorders) and cost more per call;
wrapping the transport's one entry point is all that is needed. Requests made while OpenTelemetry instrumentation is
suppressed (as exporters do) are left alone. Patching is idempotent and undone by `uninstrument_http_clients()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping
from functools import wraps
from time import perf_counter
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind

from obsbox.instrumentation import _runtime
from obsbox.instrumentation._interned import Interned
from obsbox.instrumentation._metrics import AttributeSet
from obsbox.instrumentation._propagation import inject_headers
from obsbox.instrumentation._redact import redact_url
from obsbox.instrumentation._runtime import AttributeValue, Runtime
from obsbox.instrumentation._server import error_type, mark_error, normalise_method, report

__all__ = ["instrument_http_clients", "uninstrument_http_clients"]

_SUPPRESS_KEYS = tuple(
    getattr(otel_context, name)
    for name in ("_SUPPRESS_INSTRUMENTATION_KEY", "_SUPPRESS_HTTP_INSTRUMENTATION_KEY")
    if hasattr(otel_context, name)
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _suppressed() -> bool:
    return any(otel_context.get_value(key) for key in _SUPPRESS_KEYS)


def _build_duration_attributes(key: tuple[str, str, int | None, int, str | None]) -> AttributeSet:
    method, address, port, status, error = key
    attrs: dict[str, AttributeValue] = {"http.request.method": method, "server.address": address}
    if port is not None:
        attrs["server.port"] = port
    if status:
        attrs["http.response.status_code"] = status
    if error is not None:
        attrs["error.type"] = error
    return AttributeSet(attrs)


# Built once per distinct key and shared (bounded); recorders may key on them but must not mutate them.
_metric_attrs: Interned[tuple[str, str, int | None, int, str | None], AttributeSet] = Interned(
    _build_duration_attributes
)


class ClientCall:
    """One outgoing request's telemetry: `begin` before sending, `finish` once the response (or failure) is in."""

    __slots__ = ("runtime", "span", "method", "address", "port", "started")

    runtime: Runtime
    span: Span
    method: str
    address: str
    port: int | None
    started: float

    @classmethod
    def begin(
        cls, method: str, url: str, scheme: str, address: str, port: int | None, headers: MutableMapping[str, str]
    ) -> ClientCall | None:
        """Start the CLIENT span and write the trace context into `headers`; None when not instrumenting."""
        try:
            if _suppressed():
                return None
            self = cls()
            self.runtime = runtime = _runtime.current()
            self.method = known = normalise_method(method.upper())
            self.address = address
            self.port = port if port is not None else _DEFAULT_PORTS.get(scheme)
            attributes: dict[str, AttributeValue] = {
                "http.request.method": known,
                "server.address": address,
                "url.full": redact_url(url),
            }
            if self.port is not None:
                attributes["server.port"] = self.port
            if known == "_OTHER":
                attributes["http.request.method_original"] = method
            self.span = span = runtime.tracer.start_span(
                "HTTP" if known == "_OTHER" else known, kind=SpanKind.CLIENT, attributes=attributes
            )
            inject_headers(span.get_span_context(), headers)
            self.started = perf_counter()
            return self
        except Exception as exc:
            report(exc)
            return None

    def finish(self, status: int, http_version: str | None, exc: BaseException | None) -> None:
        """Client side, 4xx and 5xx are errors too (the call did not get what it asked for)."""
        try:
            elapsed = perf_counter() - self.started
            span = self.span
            error = error_type(exc) if exc is not None else str(status) if status >= 400 else None
            if span.is_recording():
                if status:
                    span.set_attribute("http.response.status_code", status)
                if http_version:
                    span.set_attribute("network.protocol.version", http_version)
                if error is not None:
                    mark_error(span, error, exc)
            self.runtime.client_duration.record(
                elapsed, _metric_attrs[(self.method, self.address, self.port, status, error)],
                span.get_span_context(),
            )
            span.end()
        except Exception as failure:
            report(failure)


# --- httpx ----------------------------------------------------------------------------------------------------


def _httpx_version(response: Any) -> str | None:
    version = response.extensions.get("http_version") if hasattr(response, "extensions") else None
    if isinstance(version, bytes):
        version = version.decode("ascii", "replace")
    return version[5:] if isinstance(version, str) and version.startswith("HTTP/") else None


def _httpx_begin(request: Any) -> ClientCall | None:
    url = request.url
    return ClientCall.begin(request.method, str(url), url.scheme, url.host, url.port, request.headers)


def _wrap_httpx_sync(original: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(original)
    def handle_request(self: Any, request: Any) -> Any:
        call = _httpx_begin(request)
        if call is None:
            return original(self, request)
        try:
            response = original(self, request)
        except BaseException as exc:
            call.finish(0, None, exc)
            raise
        call.finish(response.status_code, _httpx_version(response), None)
        return response

    return handle_request


def _wrap_httpx_async(original: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(original)
    async def handle_async_request(self: Any, request: Any) -> Any:
        call = _httpx_begin(request)
        if call is None:
            return await original(self, request)
        try:
            response = await original(self, request)
        except BaseException as exc:
            call.finish(0, None, exc)
            raise
        call.finish(response.status_code, _httpx_version(response), None)
        return response

    return handle_async_request


# --- requests -------------------------------------------------------------------------------------------------


def _requests_version(response: Any) -> str | None:
    raw = getattr(response, "raw", None)
    version = getattr(raw, "version", None)
    return {10: "1.0", 11: "1.1", 20: "2"}.get(version) if isinstance(version, int) else None


def _wrap_requests(original: Callable[..., Any]) -> Callable[..., Any]:
    from urllib.parse import urlsplit

    @wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        call = None
        try:
            parts = urlsplit(request.url)
            call = ClientCall.begin(
                request.method or "GET", request.url, parts.scheme, parts.hostname or "", parts.port, request.headers
            )
        except Exception as exc:
            report(exc)
        if call is None:
            return original(self, request, *args, **kwargs)
        try:
            response = original(self, request, *args, **kwargs)
        except BaseException as exc:
            call.finish(0, None, exc)
            raise
        call.finish(response.status_code, _requests_version(response), None)
        return response

    return send


# --- patching -------------------------------------------------------------------------------------------------

# (module, class, method, wrapper factory)
_TARGETS: tuple[tuple[str, str, str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...] = (
    ("httpx", "HTTPTransport", "handle_request", _wrap_httpx_sync),
    ("httpx", "AsyncHTTPTransport", "handle_async_request", _wrap_httpx_async),
    ("requests.adapters", "HTTPAdapter", "send", _wrap_requests),
)
_ORIGINAL = "__obsbox_original__"


def instrument_http_clients() -> list[str]:
    """Patch the installed HTTP clients (httpx, requests); returns the names patched. Idempotent.

    Clients that are not installed are skipped silently: there is nothing of theirs to instrument.
    """
    patched: list[str] = []
    for module_name, class_name, method, wrap in _TARGETS:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        current = cls.__dict__.get(method)
        if current is None:
            continue
        if not hasattr(current, _ORIGINAL):
            wrapper = wrap(current)
            setattr(wrapper, _ORIGINAL, current)
            setattr(cls, method, wrapper)
        name = module_name.split(".")[0]
        if name not in patched:
            patched.append(name)
    return patched


def uninstrument_http_clients() -> None:
    """Undo `instrument_http_clients()`."""
    for module_name, class_name, method, _ in _TARGETS:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        original = getattr(cls.__dict__.get(method), _ORIGINAL, None)
        if original is not None:
            setattr(cls, method, original)
