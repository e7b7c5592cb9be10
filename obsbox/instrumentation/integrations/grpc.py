"""grpcio: client and server calls, unary and streaming, as CLIENT and SERVER spans with the trace context in the
call's metadata, and the `rpc.client.call.duration` / `rpc.server.call.duration` histograms (seconds).

>>> from obsbox.instrumentation.integrations import grpc as grpc_integration
>>> grpc_integration.instrument()     # configure() does this when grpcio is installed      # doctest: +SKIP

Channels made by `grpc.insecure_channel()` / `grpc.secure_channel()` and servers made by `grpc.server()`, and by
their `grpc.aio` twins, after `instrument()` are intercepted (code that imported those functions by name before
keeps the originals); grpc.aio servers' coroutine and async-generator handlers are wrapped as such, their sync ones
(run in the server's thread pool) as grpc.server's. Per the
RPC conventions: span name and `rpc.method` the full method (`shop.Inventory/Reserve`), `rpc.system.name` grpc,
`rpc.response.status_code` the status's name (`OK`, `UNAVAILABLE`), server.address/server.port from the channel's
target; a status other than OK on the client, or one of UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
UNAVAILABLE, DATA_LOSS on the server, is an error (`error.type` the status name, span status ERROR). Messages and
metadata are never recorded. Calls to OTLP collectors (`/opentelemetry.proto.collector...`) are left alone, so
exporting over gRPC never records itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
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
class _ClientCall:
    """One outgoing call's CLIENT span and duration, sync or asyncio."""

    __slots__ = ("span", "started", "attributes")

    span: Any
    started: float
    attributes: dict[str, Any]

    @classmethod
    def begin(cls, details: Any, address: str, port: int | None) -> tuple[_ClientCall, dict[str, str]] | None:
        """The call and the trace context's headers for its metadata; None for an exporter's own call, when
        instrumentation is suppressed, or when the span could not start."""
        method = details.method if isinstance(details.method, str) else details.method.decode()
        if method.startswith(_EXPORTER_PREFIX) or otel_context.get_current().get(_SUPPRESS_KEY):
            return None
        try:
            self = cls()
            self.attributes = {"rpc.system.name": "grpc", "rpc.method": method.lstrip("/"), "server.address": address}
            if port is not None:
                self.attributes["server.port"] = port
            self.span = _runtime.current().tracer.start_span(method.lstrip("/"), kind=SpanKind.CLIENT,
                                                             attributes=self.attributes)
            carrier: dict[str, str] = {}
            inject_headers(self.span.get_span_context(), carrier)
            self.started = time.perf_counter()
            return self, carrier
        except Exception as exc:  # noqa: BLE001
            report(exc)
            return None

    def end(self, code: str, error: str | None = None) -> None:
        """`error`: error.type when it is not the status (an exception before the call started)."""
        client, _ = _Durations.get()
        _finish(self.span, self.started, client, self.attributes, code,
                error if error is not None else (None if code == "OK" else code))


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
            started = _ClientCall.begin(details, address, port)
            if started is None:
                return continuation(details, request)
            call_, carrier = started
            try:
                details = Details(details, [*(details.metadata or ()), *carrier.items()])
            except Exception as exc:  # noqa: BLE001 - metadata of a shape we do not know: sent without the context
                report(exc)
            try:
                call = continuation(details, request)
            except BaseException as exc:
                call_.end("UNKNOWN", error_type(exc))
                raise

            def done(future: Any) -> None:
                try:
                    code = future.code()
                    name = code.name if code is not None else "UNKNOWN"
                except Exception:  # noqa: BLE001
                    name = "UNKNOWN"
                call_.end(name)

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


def _end_when_done(call_: _ClientCall, call: Any) -> None:
    """End a finished grpc.aio call's span with its status. Its code() is a coroutine that, the call being done,
    returns without waiting: it is run to its end here rather than in a task per call (a task only if it waits)."""
    coroutine = call.code()
    try:
        coroutine.send(None)
    except StopIteration as finished:
        code = finished.value
        call_.end(str(code.name) if code is not None else "UNKNOWN")
        return
    except Exception as exc:  # noqa: BLE001
        call_.end("UNKNOWN", error_type(exc))
        return
    coroutine.close()

    async def later() -> None:
        try:
            code = await call.code()
            call_.end(str(code.name) if code is not None else "UNKNOWN")
        except Exception as exc:  # noqa: BLE001
            call_.end("UNKNOWN", error_type(exc))

    task = asyncio.get_running_loop().create_task(later())
    _waiting.add(task)  # the loop keeps only a weak reference to a task
    task.add_done_callback(_waiting.discard)


_waiting: set[asyncio.Task[None]] = set()


def _aio_client_interceptors(target: str) -> list[Any]:
    from grpc import aio

    address, port = _split_target(target)

    def start(details: Any) -> tuple[_ClientCall, Any] | None:
        started = _ClientCall.begin(details, address, port)
        if started is None:
            return None
        call_, carrier = started
        try:
            return call_, details._replace(metadata=aio.Metadata(*(details.metadata or ()), *carrier.items()))
        except Exception as exc:  # noqa: BLE001 - metadata of a shape we do not know: sent without the context
            report(exc)
            return call_, details

    async def unary_response(continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        started = start(details)
        if started is None:
            return await continuation(details, request)
        call_, details = started
        try:
            call = await continuation(details, request)
            code = await call.code()  # the response has come (or the call failed)
        except BaseException as exc:
            call_.end("UNKNOWN", error_type(exc))
            raise
        call_.end(str(code.name) if code is not None else "UNKNOWN")
        return call

    async def stream_response(continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        started = start(details)
        if started is None:
            return await continuation(details, request)
        call_, details = started
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            call_.end("UNKNOWN", error_type(exc))
            raise
        try:
            call.add_done_callback(lambda done: _end_when_done(call_, done))
        except Exception:  # noqa: BLE001 - an inner interceptor's call without callbacks: its end is unknown
            call_.end("UNKNOWN")
        return call

    class UnaryUnary(aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return await unary_response(continuation, details, request)

    class StreamUnary(aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return await unary_response(continuation, details, request_iterator)

    class UnaryStream(aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return await stream_response(continuation, details, request)

    class StreamStream(aio.StreamStreamClientInterceptor):  # type: ignore[misc]
        async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return await stream_response(continuation, details, request_iterator)

    # grpc.aio files an interceptor under the first of the four kinds it is an instance of: one object each.
    return [UnaryUnary(), StreamUnary(), UnaryStream(), StreamStream()]


def _wrap_aio_channel(original: Callable[..., Any]) -> Callable[..., Any]:
    def channel(target: str, *args: Any, **kwargs: Any) -> Any:
        # insecure_channel(target, options, compression, interceptors); secure_channel(target, credentials, ...)
        position = 3 if original.__name__ == "insecure_channel" else 4
        try:
            ours = _aio_client_interceptors(str(target))
            if len(args) >= position:
                args = (*args[:position - 1], [*ours, *(args[position - 1] or ())], *args[position:])
            else:
                kwargs["interceptors"] = [*ours, *(kwargs.get("interceptors") or ())]
        except Exception as exc:  # noqa: BLE001
            report(exc)
        return original(target, *args, **kwargs)

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


def _async_unary_response(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def handle(request: Any, context: Any) -> Any:
        call = _begin_server(method, context)
        if call is None:
            return await behavior(request, context)
        try:
            response = await behavior(request, context)
        except BaseException as exc:
            call.end(context, exc)
            raise
        call.end(context, None)
        return response

    return handle


def _async_stream_response(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
        call = _begin_server(method, context)
        if call is None:
            async for response in behavior(request, context):
                yield response
            return
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            call.end(context, exc)
            raise
        call.end(context, None)

    return handle


def _instrumented(handler: Any, method: str) -> Any:
    """The method's handler with its behavior wrapped in a SERVER span: for grpc.server's sync behaviors, and for
    grpc.aio.server's coroutines and async generators (a sync one there runs in a thread: wrapped as in grpc.server;
    a streaming coroutine that writes with context.write() is wrapped as a unary one)."""
    if handler is None or method.startswith(_EXPORTER_PREFIX):
        return handler
    try:
        for kind in ("unary_unary", "stream_unary", "unary_stream", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is None:
                continue
            if inspect.isasyncgenfunction(behavior):
                wrapped = _async_stream_response(method, behavior)
            elif inspect.iscoroutinefunction(behavior):
                wrapped = _async_unary_response(method, behavior)
            elif kind.endswith("_unary"):
                wrapped = _unary_response(method, behavior)
            else:
                wrapped = _stream_response(method, behavior)
            return handler._replace(**{kind: wrapped})
    except Exception as exc:  # noqa: BLE001 - a handler of another shape: served uninstrumented
        report(exc)
    return handler


def _server_interceptor() -> Any:
    import grpc

    class Interceptor(grpc.ServerInterceptor):  # type: ignore[misc]
        def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
            return _instrumented(continuation(details), details.method)

    return Interceptor()


def _aio_server_interceptor() -> Any:
    from grpc import aio

    class Interceptor(aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
            return _instrumented(await continuation(details), details.method)

    return Interceptor()


def _wrap_server(original: Callable[..., Any], make: Callable[[], Any] = _server_interceptor,
                 position: int = 2) -> Callable[..., Any]:
    def server(*args: Any, **kwargs: Any) -> Any:
        # grpc.server(thread_pool, handlers=None, interceptors=None, ...) and grpc.aio.server(migration_thread_pool,
        # handlers, interceptors, ...): ours goes first, the caller's after it.
        try:
            if len(args) > position:
                args = (*args[:position], [make(), *(args[position] or ())], *args[position + 1:])
            else:
                kwargs["interceptors"] = [make(), *(kwargs.get("interceptors") or ())]
        except Exception as exc:  # noqa: BLE001
            report(exc)
        return original(*args, **kwargs)

    server.__doc__ = original.__doc__
    server.__name__ = original.__name__
    return server


def _wrap_aio_server(original: Callable[..., Any]) -> Callable[..., Any]:
    return _wrap_server(original, _aio_server_interceptor)


# (module, function, wrapper): grpc.aio's functions are wrapped where users call them, on grpc.aio.
_PATCHES: tuple[tuple[str, str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...] = (
    ("grpc", "insecure_channel", _wrap_channel), ("grpc", "secure_channel", _wrap_channel),
    ("grpc", "server", _wrap_server), ("grpc.aio", "insecure_channel", _wrap_aio_channel),
    ("grpc.aio", "secure_channel", _wrap_aio_channel), ("grpc.aio", "server", _wrap_aio_server),
)


def instrument() -> None:
    """Wrap grpc's and grpc.aio's insecure_channel, secure_channel and server. Idempotent."""
    import grpc
    import grpc.aio  # noqa: F401 - grpc imports it itself; named here so that it is there to wrap

    for module, name, wrap in _PATCHES:
        owner = sys.modules[module]
        current = getattr(owner, name)
        if not hasattr(current, _ORIGINAL):
            wrapper = wrap(current)
            setattr(wrapper, _ORIGINAL, current)
            setattr(owner, name, wrapper)


def uninstrument() -> None:
    for module, name, _ in _PATCHES:
        owner = sys.modules.get(module)
        if owner is None:
            continue
        original = getattr(getattr(owner, name), _ORIGINAL, None)
        if original is not None:
            setattr(owner, name, original)
