"""grpcio: client and server calls, unary and streaming, as CLIENT and SERVER spans with the trace context in the
call's metadata, and the `rpc.client.call.duration` / `rpc.server.call.duration` histograms (seconds).

>>> from obsbox.instrumentation.integrations import grpc as grpc_integration
>>> grpc_integration.instrument()     # configure() does this when grpcio is installed      # doctest: +SKIP

Channels made by `grpc.insecure_channel()` / `grpc.secure_channel()` and servers made by `grpc.server()` after
`instrument()` are intercepted (code that imported those functions by name before keeps the originals). Per the
RPC conventions: span name and `rpc.method` the full method (`shop.Inventory/Reserve`), `rpc.system.name` grpc,
`rpc.response.status_code` the status's name (`OK`, `UNAVAILABLE`), server.address/server.port from the channel's
target; a status other than OK on the client, or one of UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
UNAVAILABLE, DATA_LOSS on the server, is an error (`error.type` the status name, span status ERROR). Messages and
metadata are never recorded. Calls to OTLP collectors (`/opentelemetry.proto.collector...`) are left alone, so
exporting over gRPC never records itself. Not covered: `grpc.aio`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from obsbox.instrumentation import _runtime
from obsbox.instrumentation._propagation import extract_context, inject_headers
from obsbox.instrumentation._server import error_type, report
from obsbox.instrumentation.catalogue import HTTP_DURATION_BUCKETS, SEMCONV_METRICS

__all__ = ["DISTRIBUTION", "LIBRARY", "SUPPORTED", "instrument", "uninstrument"]

LIBRARY = "grpc"
DISTRIBUTION = "grpcio"
SUPPORTED = ("1.50", "2")

_EXPORTER_PREFIX = "/opentelemetry.proto.collector."
_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})
_SUPPRESS_KEY = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", "suppress_instrumentation")
_ORIGINAL = "__obsbox_original__"


class _Durations:
    """The two RPC histograms, on the global (switchable) MeterProvider: made once, valid across configure()."""

    client: metrics.Histogram | None = None
    server: metrics.Histogram | None = None

    @classmethod
    def get(cls) -> tuple[metrics.Histogram, metrics.Histogram]:
        if cls.client is None or cls.server is None:
            meter = metrics.get_meter("obsbox.grpc")
            client = SEMCONV_METRICS["rpc.client.call.duration"]
            server = SEMCONV_METRICS["rpc.server.call.duration"]
            cls.client = meter.create_histogram(client.name, client.unit, client.description,
                                                explicit_bucket_boundaries_advisory=HTTP_DURATION_BUCKETS)
            cls.server = meter.create_histogram(server.name, server.unit, server.description,
                                                explicit_bucket_boundaries_advisory=HTTP_DURATION_BUCKETS)
        return cls.client, cls.server


def _split_target(target: str) -> tuple[str, int | None]:
    host = target.split("://", 1)[-1]
    if host.startswith("["):  # [::1]:50051
        address, _, port = host[1:].partition("]:")
    else:
        address, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    return address or host, int(port) if port.isdigit() else None


def _finish(span: Any, started: float, histogram: metrics.Histogram, attributes: dict[str, Any], code: str,
            error: str | None) -> None:
    try:
        elapsed = time.perf_counter() - started
        attrs = dict(attributes)
        attrs["rpc.response.status_code"] = code
        if error is not None:
            attrs["error.type"] = error
        if span.is_recording():
            span.set_attribute("rpc.response.status_code", code)
            if error is not None:
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, error))
        histogram.record(elapsed, attrs, trace.set_span_in_context(span))  # the exemplar's span
        span.end()
    except Exception as exc:  # noqa: BLE001
        report(exc)


# --- client ---------------------------------------------------------------------------------------------------
def _client_interceptor(target: str) -> Any:
    import grpc

    address, port = _split_target(target)

    class Details(grpc.ClientCallDetails):  # type: ignore[misc]
        def __init__(self, base: Any, metadata: list[tuple[str, str]]) -> None:
            self.method = base.method
            self.timeout = base.timeout
            self.metadata = metadata
            self.credentials = base.credentials
            self.wait_for_ready = getattr(base, "wait_for_ready", None)
            self.compression = getattr(base, "compression", None)

    class Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor, grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]  # noqa: E501
        def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
            method = details.method if isinstance(details.method, str) else details.method.decode()
            if method.startswith(_EXPORTER_PREFIX) or otel_context.get_current().get(_SUPPRESS_KEY):
                return continuation(details, request)
            started = None
            try:
                attributes: dict[str, Any] = {"rpc.system.name": "grpc", "rpc.method": method.lstrip("/"),
                                              "server.address": address}
                if port is not None:
                    attributes["server.port"] = port
                span = _runtime.current().tracer.start_span(method.lstrip("/"), kind=SpanKind.CLIENT,
                                                            attributes=attributes)
                carrier: dict[str, str] = {}
                inject_headers(span.get_span_context(), carrier)
                details = Details(details, [*(details.metadata or ()), *carrier.items()])
                started = time.perf_counter()
            except Exception as exc:  # noqa: BLE001
                report(exc)
            if started is None:
                return continuation(details, request)
            client, _ = _Durations.get()
            try:
                call = continuation(details, request)
            except BaseException as exc:
                _finish(span, started, client, attributes, "UNKNOWN", error_type(exc))
                raise

            def done(future: Any) -> None:
                try:
                    code = future.code()
                    name = code.name if code is not None else "UNKNOWN"
                except Exception:  # noqa: BLE001
                    name = "UNKNOWN"
                _finish(span, started, client, attributes, name, None if name == "OK" else name)

            call.add_done_callback(done)
            return call

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return self._call(continuation, details, request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return self._call(continuation, details, request)

        def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return self._call(continuation, details, request_iterator)

        def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return self._call(continuation, details, request_iterator)

    return Interceptor()


def _wrap_channel(original: Callable[..., Any]) -> Callable[..., Any]:
    def channel(target: str, *args: Any, **kwargs: Any) -> Any:
        made = original(target, *args, **kwargs)
        try:
            import grpc

            return grpc.intercept_channel(made, _client_interceptor(str(target)))
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return made

    channel.__doc__ = original.__doc__
    channel.__name__ = original.__name__
    return channel


# --- server ---------------------------------------------------------------------------------------------------
def _status_of(context: Any, exc: BaseException | None) -> str:
    code = None
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - grpcio before 1.38 has no code()
        code = None
    if code is not None:
        return str(code.name)
    return "UNKNOWN" if exc is not None else "OK"


class _ServerCall:
    __slots__ = ("span", "token", "started", "attributes")

    def __init__(self, method: str, context: Any) -> None:
        metadata = dict(context.invocation_metadata() or ())
        parent = extract_context(metadata.get("traceparent"), metadata.get("tracestate"), metadata.get("baggage"),
                                 metadata, lambda m: m)
        self.attributes: dict[str, Any] = {"rpc.system.name": "grpc", "rpc.method": method.lstrip("/")}
        self.span = _runtime.current().tracer.start_span(method.lstrip("/"), context=parent,
                                                          kind=SpanKind.SERVER, attributes=self.attributes)
        self.token = otel_context.attach(trace.set_span_in_context(self.span, parent))
        self.started = time.perf_counter()

    def end(self, context: Any, exc: BaseException | None) -> None:
        with contextlib.suppress(Exception):  # a generator finished in another context
            otel_context.detach(self.token)
        code = _status_of(context, exc)
        error = code if code in _SERVER_ERRORS else None
        if exc is not None and code == "UNKNOWN":
            error = error_type(exc)
        _, server = _Durations.get()
        _finish(self.span, self.started, server, self.attributes, code, error)


def _begin_server(method: str, context: Any) -> _ServerCall | None:
    try:
        return _ServerCall(method, context)
    except Exception as exc:  # noqa: BLE001
        report(exc)
        return None


def _unary_response(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    def handle(request: Any, context: Any) -> Any:
        call = _begin_server(method, context)
        if call is None:
            return behavior(request, context)
        try:
            response = behavior(request, context)
        except BaseException as exc:
            call.end(context, exc)
            raise
        call.end(context, None)
        return response

    return handle


def _stream_response(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    def handle(request: Any, context: Any) -> Iterator[Any]:
        call = _begin_server(method, context)
        if call is None:
            yield from behavior(request, context)
            return
        try:
            yield from behavior(request, context)
        except BaseException as exc:
            call.end(context, exc)
            raise
        call.end(context, None)

    return handle


def _server_interceptor() -> Any:
    import grpc

    class Interceptor(grpc.ServerInterceptor):  # type: ignore[misc]
        def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
            handler = continuation(details)
            method = details.method
            if handler is None or method.startswith(_EXPORTER_PREFIX):
                return handler
            try:
                if handler.unary_unary is not None:
                    return handler._replace(unary_unary=_unary_response(method, handler.unary_unary))
                if handler.stream_unary is not None:
                    return handler._replace(stream_unary=_unary_response(method, handler.stream_unary))
                if handler.unary_stream is not None:
                    return handler._replace(unary_stream=_stream_response(method, handler.unary_stream))
                if handler.stream_stream is not None:
                    return handler._replace(stream_stream=_stream_response(method, handler.stream_stream))
            except Exception as exc:  # noqa: BLE001 - a handler of another shape: served uninstrumented
                report(exc)
            return handler

    return Interceptor()


def _wrap_server(original: Callable[..., Any]) -> Callable[..., Any]:
    def server(*args: Any, **kwargs: Any) -> Any:
        # grpc.server(thread_pool, handlers=None, interceptors=None, ...): ours goes first, the caller's after it.
        try:
            if len(args) > 2:
                args = (*args[:2], [_server_interceptor(), *(args[2] or ())], *args[3:])
            else:
                kwargs["interceptors"] = [_server_interceptor(), *(kwargs.get("interceptors") or ())]
        except Exception as exc:  # noqa: BLE001
            report(exc)
        return original(*args, **kwargs)

    server.__doc__ = original.__doc__
    server.__name__ = original.__name__
    return server


_PATCHES: tuple[tuple[str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...] = (
    ("insecure_channel", _wrap_channel), ("secure_channel", _wrap_channel), ("server", _wrap_server),
)


def instrument() -> None:
    """Wrap grpc.insecure_channel, grpc.secure_channel and grpc.server. Idempotent."""
    import grpc

    for name, wrap in _PATCHES:
        current = getattr(grpc, name)
        if not hasattr(current, _ORIGINAL):
            wrapper = wrap(current)
            setattr(wrapper, _ORIGINAL, current)
            setattr(grpc, name, wrapper)


def uninstrument() -> None:
    grpc = sys.modules.get(LIBRARY)
    if grpc is None:
        return
    for name, _ in _PATCHES:
        original = getattr(getattr(grpc, name), _ORIGINAL, None)
        if original is not None:
            setattr(grpc, name, original)
