"""Where finished spans go: processors behind one protocol, `on_end(span)`.

>>> capture = SpanCapture()
>>> provider.add_processor(capture)           # obsbox's own: handed the lean span itself     # doctest: +SKIP
>>> provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=...)))          # doctest: +SKIP

Implementations of `SpanProcessor`:
- the OTLP export queue (`_pipeline.Queue`: encodes the span and queues the bytes; the export thread sends them);
- `SpanCapture`, an in-memory list (obsbox.testing's `capture(in_memory=True)` reads it);
- `SdkBridge`, which shows every span to the OpenTelemetry SDK span processors a user added
  (`configure(span_processors=[...])` or `trace.get_tracer_provider().add_span_processor(...)`) as an SDK
  `ReadableSpan`, so SDK exporters (OTLP to a second destination, console, in-memory) work unchanged.

The provider joins its processors into one `sink` callable that `Span.end()` calls: with only the OTLP queue it is
the queue's own `offer`, so the default path pays nothing for this seam; the ReadableSpan is built only when a user
processor is present, once per span, whatever the number of SDK processors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import SpanProcessor as SdkSpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

if TYPE_CHECKING:
    from obsbox.instrumentation._tracer import Span

_log = logging.getLogger("obsbox")
_STATUS = (StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR)
_KINDS = {k.value + 1: k for k in SpanKind}  # OTLP numbers (SERVER is 2) → the API's enum
# SDK processors whose on_start does nothing: with only these, spans start without calling them.
_NO_OP_ON_START = {SdkSpanProcessor.on_start, BatchSpanProcessor.on_start, SimpleSpanProcessor.on_start}


class SpanProcessor(Protocol):
    """What a finished span is handed to. Called on the thread that ends the span: must be quick, never raise."""

    def on_end(self, span: Span) -> None: ...


class ManagedProcessor(SpanProcessor, Protocol):
    """A processor with a lifetime of its own: flushed and shut down with the configuration it belongs to."""

    def force_flush(self, timeout: float) -> bool: ...

    def shutdown(self) -> None: ...


def join(processors: Sequence[SpanProcessor], discard: Callable[[Span], None]) -> Callable[[Span], None]:
    """One callable that hands a span to every processor, in order (the processor itself when there is one)."""
    ends = tuple(p.on_end for p in processors)
    if not ends:
        return discard
    if len(ends) == 1:
        return ends[0]

    def fan_out(span: Span) -> None:
        for end in ends:
            end(span)

    return fan_out


class SpanCapture:
    """Keeps every finished span in memory (no encoding, no thread): for tests.

    >>> capture = SpanCapture(); provider.add_processor(capture)      # doctest: +SKIP
    >>> [span.name for span in capture.spans]                          # doctest: +SKIP
    ['GET /items/{item_id}']
    """

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def on_end(self, span: Span) -> None:
        with self._lock:
            self.spans.append(span)

    def take(self) -> list[Span]:
        """The spans captured so far, forgetting them."""
        with self._lock:
            spans, self.spans = self.spans, []
        return spans

    def force_flush(self, timeout: float) -> bool:
        return True

    def shutdown(self) -> None:
        return None


class SdkBridge:
    """The user's OpenTelemetry SDK span processors, each shown every span as an SDK ReadableSpan.

    A failing user processor never reaches the application: its first failure is logged, later ones are counted.
    """

    def __init__(self, resource: Callable[[], Mapping[str, Any]], scopes: Mapping[bytes, InstrumentationScope]
                 ) -> None:
        self.processors: list[SdkSpanProcessor] = []
        self._resource_of = resource
        self._scopes = scopes
        self._resource: tuple[Mapping[str, Any], Resource] | None = None
        self.failures = 0

    @property
    def wants_start(self) -> bool:
        """Whether some processor does something in on_start (then spans must call it when they start)."""
        return any(type(p).on_start not in _NO_OP_ON_START for p in self.processors)

    def on_start(self, span: Span, parent_context: Context | None) -> None:
        # The lean span offers the API's Span methods (set_attribute, add_event, ...) that on_start hooks use.
        for processor in self.processors:
            try:
                processor.on_start(span, parent_context)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - never raise into the application
                self._failed(processor, exc)

    def on_end(self, span: Span) -> None:
        try:
            readable = self.readable(span)
        except Exception as exc:  # noqa: BLE001
            self._failed(self, exc)
            return
        for processor in self.processors:
            try:
                processor.on_end(readable)
            except Exception as exc:  # noqa: BLE001
                self._failed(processor, exc)

    def force_flush(self, timeout: float) -> bool:
        done = True
        for processor in self.processors:
            try:
                done = processor.force_flush(int(timeout * 1000)) and done
            except Exception as exc:  # noqa: BLE001
                self._failed(processor, exc)
                done = False
        return done

    def shutdown(self) -> None:
        for processor in self.processors:
            try:
                processor.shutdown()
            except Exception as exc:  # noqa: BLE001
                self._failed(processor, exc)

    def _failed(self, processor: object, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            _log.warning("obsbox: span processor %s failed; the span went on without it (later failures are not "
                         "logged)", type(processor).__name__, exc_info=exc)

    def resource(self) -> Resource:
        attrs = self._resource_of()
        cached = self._resource
        if cached is None or cached[0] is not attrs:  # a new configuration or a forked worker: a new resource
            cached = self._resource = (attrs, Resource(dict(attrs)))
        return cached[1]

    def readable(self, span: Span) -> ReadableSpan:
        """The SDK's ReadableSpan of a finished lean span: what SDK exporters read."""
        links = []
        for trace_id, span_id, state, attributes, flags in span.links or ():
            # (a link keeps the ids, state and remoteness of its context, not its trace flags)
            context = SpanContext(trace_id, span_id, bool(flags & 0x200), TraceFlags(TraceFlags.DEFAULT),
                                  TraceState.from_header([state]) if state else None)
            links.append(Link(context, attributes))
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=self.resource(),
            attributes=span.all_attributes(),
            events=[Event(name, attributes, timestamp) for name, timestamp, attributes in span.events or ()],
            links=links,
            kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
            status=Status(_STATUS[span.status_code], span.status_message or None),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=self._scopes.get(span.scope),
        )
