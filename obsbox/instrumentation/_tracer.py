"""A lean implementation of the OpenTelemetry tracing API: spans that cost a few microseconds.

>>> provider = TracerProvider(sink=finished.append, resource={"service.name": "orders"})   # doctest: +SKIP
>>> trace.set_tracer_provider(provider)                                                    # doctest: +SKIP
>>> with trace.get_tracer(__name__).start_as_current_span("work") as span:                # doctest: +SKIP
...     span.set_attribute("items", 3)

The SDK's span (≈20 µs for start+end) validates and copies every attribute, takes locks and runs a chain of
processors. Here a span is a slotted object: the sampler is decided inline (the standard samplers), ids come from
`random.getrandbits`, and on end() the span itself is handed to `sink` (the export queue) — no copy. Spans still
are real OpenTelemetry API spans: they live in the context, nest, propagate over W3C traceparent, and libraries
that call `trace.get_tracer()` get this tracer.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.util import types

from obsbox.instrumentation import _limits
from obsbox.instrumentation._encode import SharedAttributes, encode_scope
from obsbox.instrumentation._processors import ManagedProcessor, SdkBridge, SpanProcessor, join
from obsbox.instrumentation._redact import redact_text

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor as SdkSpanProcessor

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_EMPTY_STATE = DEFAULT_TRACE_STATE  # the API's empty TraceState; the encoder knows it by identity
_KIND_TO_OTLP = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
                 SpanKind.CONSUMER: 5}
_log = logging.getLogger("obsbox")
_getrandbits = random.getrandbits
_time_ns = time.time_ns
_get_current_context = context_api.get_current
_new_tuple = tuple.__new__
_set_span_in_context = trace.set_span_in_context
_attach = context_api.attach
_detach = context_api.detach


def _context_variable() -> ContextVar[Context] | None:
    """The context variable behind OpenTelemetry's current context, when it is the default contextvars runtime."""
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    return variable if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar) else None


# OTEL_PYTHON_CONTEXT can name another runtime context: then the API's attach/detach are used.
_CONTEXT_VARIABLE = _context_variable()
# While a profiler notes the current span (obsbox.profiling._active): called with the span `attach_span` makes
# current and with the one current again after `detach_span`. None otherwise: one load and test per call.
note_span: Callable[[Any], None] | None = None


def attach_span(span: trace.Span, parent: Context) -> Token[Context]:
    """`context.attach(trace.set_span_in_context(span, parent))` in one step: one new context, no layers of calls.

    Detach with `detach_span`, which raises (ValueError) where the API's `detach` would log.
    """
    context = Context({**parent, _SPAN_KEY: span}) if parent else Context({_SPAN_KEY: span})
    variable = _CONTEXT_VARIABLE
    if variable is None:
        return _attach(context)
    token = variable.set(context)
    if note_span is not None:
        note_span(span)
    return token


def detach_span(token: Token[Context]) -> None:
    """Make the context current again that was current before `attach_span`."""
    variable = _CONTEXT_VARIABLE
    if variable is not None:
        variable.reset(token)
        if note_span is not None:
            note_span(variable.get().get(_SPAN_KEY))
    else:  # another runtime context: raise as reset() does
        context_api._RUNTIME_CONTEXT.detach(token)


class Sampler:
    """The standard samplers by their OTEL_TRACES_SAMPLER names (parentbased_always_on by default)."""

    __slots__ = ("name", "ratio", "_parent_based", "_root", "_bound", "roots_on")

    reads_attributes = False  # whether `sample` looks at the attributes a span starts with

    def __init__(self, name: str = "parentbased_always_on", ratio: float = 1.0) -> None:
        self.name, self.ratio = name, ratio
        self._parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        self._root = root  # always_on, always_off or traceidratio
        self.roots_on = root == "always_on"  # every new trace is sampled: callers may skip `sample` for roots
        # As the SDK's TraceIdRatioBased: compare the low 64 bits of the trace id with ratio × 2^64.
        self._bound = round(ratio * (1 << 64))

    def sample(self, parent: SpanContext | None, trace_id: int, attributes: types.Attributes = None) -> bool | None:
        """Whether the span is sampled; None (a RuleSampler's answer): recorded, exported only as an error."""
        if self._parent_based and parent is not None:
            return bool(parent.trace_flags & 1)
        if self._root == "always_on":
            return True
        if self._root == "always_off":
            return False
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self._bound


def _own_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    limits = _limits.current
    if limits.value_length is None and len(attributes) <= limits.attributes:
        return dict(attributes)
    return _limits.bounded(attributes, limits.attributes, limits.value_length)


class Span(trace.Span):
    """A recording span; after end() it is immutable and goes to the export queue as it is."""

    __slots__ = (
        "name", "context", "parent", "kind", "start_time", "end_time", "shared", "attributes", "events", "links",
        "status_code", "status_message", "scope",
        "_sink", "_record_exception", "_set_status_on_exception",
    )

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: int,
        attributes: types.Attributes,
        links: Sequence[trace.Link] | None,
        start_time: int,
        scope: bytes,
        sink: Callable[[Span], None],
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.start_time = start_time
        self.end_time = 0
        # Attributes are `shared` blocks (see SharedAttributes; the request path sets them) and then this dict.
        self.shared: list[SharedAttributes] | None = None
        self.attributes: dict[str, Any] | None = _own_attributes(attributes) if attributes else None
        self.events: list[tuple[str, int, Mapping[str, Any]]] | None = None
        self.links: list[tuple[int, int, str, Mapping[str, Any], int]] | None = None
        if links:
            for link in links:
                self._add_link(link.context, link.attributes)
        self.status_code = 0
        self.status_message = ""
        self.scope = scope
        self._sink = sink
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

    # --- the OpenTelemetry Span API -------------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return not self.end_time

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self.end_time or value is None:
            return
        if self.shared is not None and any(key in block for block in self.shared):
            self._unshare()
        limits = _limits.current
        if limits.value_length is not None:
            value = _limits.truncate(value, limits.value_length)
        attrs = self.attributes
        if attrs is None:
            if limits.attributes:
                self.attributes = {key: value}
            return
        # As the SDK's BoundedAttributes: a key set again moves to the end, and a full span drops its oldest.
        if key in attrs:
            del attrs[key]
        elif len(attrs) >= limits.attributes:
            if not attrs:
                return
            del attrs[next(iter(attrs))]
        attrs[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self.end_time:
            return
        if self.shared is not None and any(key in block for block in self.shared for key in attributes):
            self._unshare()
        limits = _limits.current
        attrs = self.attributes
        if attrs is None:
            if limits.value_length is None and len(attributes) <= limits.attributes:
                self.attributes = {k: v for k, v in attributes.items() if v is not None}
                return
        elif (limits.value_length is None and len(attributes) + len(attrs) <= limits.attributes
              and attrs.keys().isdisjoint(attributes)):
            attrs.update((k, v) for k, v in attributes.items() if v is not None)
            return
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def all_attributes(self) -> dict[str, Any]:
        """Every attribute of the span, shared blocks included, in the order they are encoded."""
        merged: dict[str, Any] = {}
        for block in self.shared or ():
            merged.update(block)
        merged.update(self.attributes or {})
        return merged

    def _unshare(self) -> None:
        # An attribute set again that a shared block holds: the span takes its own copy of all of them, so the
        # new value replaces the old in place instead of appearing twice.
        self.attributes = self.all_attributes()
        self.shared = None

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self.end_time:
            return
        limits = _limits.current
        own = _limits.bounded(attributes, limits.event_attributes, limits.value_length) if attributes else {}
        event = (name, timestamp or _time_ns(), own)
        if self.events is None:
            if limits.events:
                self.events = [event]
        else:
            if len(self.events) >= limits.events:  # as the SDK: the newest are kept
                del self.events[:len(self.events) - limits.events + 1]
            if limits.events:
                self.events.append(event)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not self.end_time:
            self._add_link(context, attributes)

    def _add_link(self, context: SpanContext, attributes: types.Attributes) -> None:
        if not context.is_valid and not attributes:
            return
        state = context.trace_state.to_header() if context.trace_state else ""
        flags = 0x100 | (0x200 if context.is_remote else 0)  # as the official encoder: no trace flags
        limits = _limits.current
        own = _limits.bounded(attributes, limits.link_attributes, limits.value_length) if attributes else {}
        link = (context.trace_id, context.span_id, state, own, flags)
        if self.links is None:
            if limits.links:
                self.links = [link]
        else:
            if len(self.links) >= limits.links:  # as the SDK: the newest are kept
                del self.links[:len(self.links) - limits.links + 1]
            if limits.links:
                self.links.append(link)

    def update_name(self, name: str) -> None:
        if not self.end_time:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time or self.status_code == 1:  # OK is final, as in the SDK
            return
        if isinstance(status, Status):
            code, message = status.status_code, status.description
        else:
            code, message = status, description
        self.status_code = 2 if code is StatusCode.ERROR else 1 if code is StatusCode.OK else 0
        # Exception texts quote URLs (requests' raise_for_status: "... for url: https://...?api_key=...").
        self.status_message = redact_text(message) if message and self.status_code == 2 else ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        stacktrace = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
        attrs: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": redact_text(str(exception)),
            "exception.stacktrace": redact_text(stacktrace),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time:
            return
        self.end_time = end_time or _time_ns()
        self._sink(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}")
        self.end()

    def __repr__(self) -> str:
        return f"Span(name={self.name!r}, trace_id={self.context.trace_id:032x}, span_id={self.context.span_id:016x})"


class _CurrentSpan:
    """start_as_current_span's result: a context manager (a class: cheaper than a generator-based one) that
    starts the span on entry, as the API's does, and also works as a decorator of sync and async functions."""

    __slots__ = ("_tracer", "_args", "_span", "_token", "_end_on_exit", "_record_exception", "_set_status")

    def __init__(self, tracer: Tracer, args: tuple[Any, ...], end_on_exit: bool, record_exception: bool,
                 set_status: bool) -> None:
        self._tracer = tracer
        self._args = args
        self._end_on_exit = end_on_exit
        self._record_exception = record_exception
        self._set_status = set_status

    def __enter__(self) -> trace.Span:
        self._span = span = self._tracer.start_span(*self._args)
        self._token = _attach(_set_span_in_context(span))
        return span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        try:
            if exc is not None and span.is_recording():
                if self._record_exception:
                    span.record_exception(exc, escaped=True)
                if self._set_status and isinstance(exc, Exception):
                    span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            _detach(self._token)
            if self._end_on_exit:
                span.end()

    def _fresh(self) -> _CurrentSpan:
        return _CurrentSpan(self._tracer, self._args, self._end_on_exit, self._record_exception, self._set_status)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """`@tracer.start_as_current_span("name")`: one span per call of `func`."""
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return wrapper


class Tracer(trace.Tracer):
    """Starts lean spans for one instrumentation scope."""

    def __init__(self, provider: TracerProvider, scope: bytes) -> None:
        self._provider = provider
        self._scope = scope

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: trace._Links = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self.start(
            name,
            context if context is not None else _get_current_context(),
            kind._value_ + 1 if type(kind) is SpanKind else _KIND_TO_OTLP.get(kind, 1),
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    def start(
        self,
        name: str,
        context: Context,
        kind: int,
        attributes: types.Attributes = None,
        links: trace._Links = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        """`start_span` with the parent context given and the kind as its OTLP number (SERVER is 2): the request
        path's way in, without keyword arguments or enum lookups."""
        provider = self._provider
        # As trace.get_current_span(context).get_span_context(), without the API's layers of calls.
        current = context.get(_SPAN_KEY)
        parent: SpanContext | None
        if current is None:
            parent = None
        elif type(current) is Span:
            parent = current.context
        else:
            parent = current.get_span_context() if isinstance(current, trace.Span) else None
        if provider.shutdown_done:
            # Inactive (before configure() or after shutdown()): behave as the API's no-op tracer and pass the
            # incoming context through unchanged, so a stopped pipeline never tells downstream services "not sampled".
            return NonRecordingSpan(parent) if parent is not None and parent.is_valid else trace.INVALID_SPAN
        if parent is not None and parent[5]:  # is_valid
            trace_id = parent[0]
            state = parent[4]
        else:
            parent = None
            trace_id = _getrandbits(128) or 1
            state = _EMPTY_STATE
        span_id = _getrandbits(64) or 1
        sampler = provider.sampler
        if (parent is not None or not sampler.roots_on) and not (
                decision := sampler.sample(parent, trace_id, attributes)):
            if decision is None:  # dropped by a sampling rule: recorded unsampled, exported only if it fails
                return Span(name, SpanContext(trace_id, span_id, False, _NOT_SAMPLED, state), parent, kind,
                            attributes, links, start_time or _time_ns(), self._scope, provider.keep_if_error,
                            record_exception, set_status_on_exception)
            return NonRecordingSpan(SpanContext(trace_id, span_id, False, _NOT_SAMPLED, state))
        return Span(
            name,
            # SpanContext(trace_id, span_id, False, _SAMPLED, state) without its validation: the ids are valid.
            _new_tuple(SpanContext, (trace_id, span_id, False, _SAMPLED, state, True)),
            parent,
            kind,
            attributes,
            links,
            start_time or _time_ns(),
            self._scope,
            provider.sink,
            record_exception,
            set_status_on_exception,
        )

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: trace._Links = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _CurrentSpan:
        args = (name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception)
        return _CurrentSpan(self, args, end_on_exit, record_exception, set_status_on_exception)


class TracerProvider(trace.TracerProvider):
    """The global tracer provider obsbox installs; finished spans go to `sink`, which joins the processors.

    `activate()` installs a configuration's sampler, resource and own processors in one step, `deactivate()` ends
    it; in between, `add_span_processor()` adds an OpenTelemetry SDK span processor (shown SDK ReadableSpans) and
    `add_processor()` one of obsbox's (shown the span itself). Processors added belong to the configuration in
    force: flushed with it, shut down with it.
    """

    def __init__(self, sink: Callable[[Span], None], sampler: Sampler | None = None,
                 resource: Mapping[str, Any] | None = None,
                 on_flush: Callable[[float], bool] | None = None,
                 on_shutdown: Callable[[], None] | None = None) -> None:
        self.sink = sink
        self._discard = sink  # the sink with no processor
        self.sampler = sampler or Sampler()
        self.resource: dict[str, Any] = dict(resource or {})
        self.shutdown_done = False
        self._tracers: dict[tuple[str, str | None], Tracer] = {}
        self._scopes: dict[bytes, InstrumentationScope] = {}
        self._on_flush = on_flush
        self._on_shutdown = on_shutdown
        self._own: tuple[SpanProcessor, ...] = ()  # the configuration's (the OTLP queue)
        self._added: list[ManagedProcessor] = []  # added by the user or by obsbox.testing
        self._sdk: SdkBridge | None = None  # the user's SDK processors, behind one bridge
        self.start_hooks = False  # whether an SDK processor's on_start wants each span as it starts

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> Tracer:
        key = (instrumenting_module_name, instrumenting_library_version)
        tracer = self._tracers.get(key)
        if tracer is None:
            scope = encode_scope(instrumenting_module_name, instrumenting_library_version,
                                 dict(attributes) if attributes else None)
            self._scopes.setdefault(scope, InstrumentationScope(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes))
            tracer = self._tracers[key] = Tracer(self, scope)
            self._hook_start(tracer)
        return tracer

    # --- processors -------------------------------------------------------------------------------------------
    def activate(self, sampler: Sampler, resource: dict[str, Any], processors: Sequence[SpanProcessor],
                 sdk_processors: Sequence[SdkSpanProcessor] = ()) -> None:
        """Install a configuration in one step: its sampler, resource, own processors (the OTLP queue) and the
        user's SDK processors; spans are recorded from here on."""
        self.sampler = sampler
        self.resource = resource
        self._own = tuple(processors)
        if sdk_processors:
            self._bridge().processors.extend(sdk_processors)
        self._refresh()
        self.shutdown_done = False

    def deactivate(self) -> None:
        """End the configuration: record nothing more; shut down the processors that were added to it."""
        self.shutdown_done = True
        self._own = ()
        added, self._added, self._sdk = self._added, [], None
        self._refresh()
        for processor in added:
            try:
                processor.shutdown()
            except Exception:  # noqa: BLE001
                _log.debug("obsbox: a span processor failed to shut down", exc_info=True)

    def after_fork(self, resource: dict[str, Any], processors: Sequence[SpanProcessor]) -> None:
        """In a forked worker: its own resource (instance id, pid), and the configuration's own processors, which
        are new objects (fresh queues). SDK processors the user added restart themselves (the SDK's fork hooks)."""
        self.resource = resource
        self._own = tuple(processors)
        self._refresh()

    def add_span_processor(self, span_processor: SdkSpanProcessor) -> None:
        """Add an OpenTelemetry SDK `SpanProcessor` (BatchSpanProcessor with any SDK exporter, ...): it is shown
        every finished, sampled span as an SDK ReadableSpan, and on_start hooks are called as spans start."""
        self._bridge().processors.append(span_processor)
        self._refresh()

    def _bridge(self) -> SdkBridge:
        if self._sdk is None:
            self._sdk = SdkBridge(lambda: self.resource, self._scopes)
            self._added.append(self._sdk)
        return self._sdk

    def add_processor(self, processor: ManagedProcessor) -> None:
        """Add one of obsbox's processors (see _processors): shown the finished lean span itself."""
        self._added.append(processor)
        self._refresh()

    def flush_processors(self, timeout: float) -> bool:
        """Flush the processors added to this configuration (the OTLP queue is flushed by the pipeline)."""
        done = True
        for processor in list(self._added):
            done = processor.force_flush(timeout) and done
        return done

    def _refresh(self) -> None:
        self.sink = join((*self._own, *self._added), self._discard)
        self.start_hooks = self._sdk is not None and self._sdk.wants_start
        for tracer in self._tracers.values():
            self._hook_start(tracer)

    def _hook_start(self, tracer: Tracer) -> None:
        # Only while the sampler reads start attributes (sampling rules) or an SDK processor does something at
        # start, the tracer becomes a FullStartTracer, so the usual path stays exactly as it is. The request path
        # takes its shortcut (attribute blocks set after the start) only for a plain Tracer; otherwise a server
        # span starts with all its attributes, the route among them where the framework can tell it in advance.
        full = self.sampler.reads_attributes or self.start_hooks
        wanted = FullStartTracer if full else Tracer
        if type(tracer) is not wanted:  # (only then: assigning __class__ costs the object its fast attribute access)
            tracer.__class__ = wanted

    def keep_if_error(self, span: Span) -> None:
        """The sink of a span a sampling rule dropped: it goes on, as sampled, only when it ended as an error."""
        if span.status_code == 2:
            context = span.context
            span.context = _new_tuple(SpanContext, (context[0], context[1], False, _SAMPLED, context[4], True))
            self.sink(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._on_flush(timeout_millis / 1000) if self._on_flush else True

    def shutdown(self) -> None:
        if not self.shutdown_done:
            self.shutdown_done = True
            if self._on_shutdown:
                self._on_shutdown()


class FullStartTracer(Tracer):
    """A tracer whose spans start knowing their attributes, and which shows each span it starts to the SDK
    processors' on_start (see TracerProvider._hook_start)."""

    @property
    def calls_on_start(self) -> bool:
        """Whether on_start hooks see the spans (then they start with every attribute, not only the sampler's)."""
        return self._provider.start_hooks

    def start(self, name: str, context: Context, *args: Any) -> trace.Span:
        span = Tracer.start(self, name, context, *args)
        bridge = self._provider._sdk
        if type(span) is Span and bridge is not None:
            bridge.on_start(span, context)
        return span
