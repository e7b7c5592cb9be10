"""W3C trace context on the request path: read `traceparent`/`tracestate` in, write them out, cheaply.

>>> ctx = extract_context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None, None, {}, dict)
>>> from opentelemetry import trace
>>> format(trace.get_current_span(ctx).get_span_context().trace_id, "032x")
'0af7651916cd43dd8448eb211c80319c'

The OpenTelemetry propagator parses with regular expressions and walks a carrier through a getter; on a request
path that costs several microseconds per request. When the global propagator is the default one (W3C trace context
plus baggage, the OpenTelemetry default) we parse the two headers ourselves; with any other propagator configured
(B3, Jaeger, ...) we hand the carrier to it, so users' propagation settings always win.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import TypeVar

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from obsbox.instrumentation._propagate import propagate

T = TypeVar("T")
_BAGGAGE = W3CBaggagePropagator()
_fast_for: object = None  # the global propagator last found to be W3C-only
_slow_for: object = None  # the global propagator last found to be something else


def _is_w3c(propagator: object) -> bool:
    if isinstance(propagator, TraceContextTextMapPropagator | W3CBaggagePropagator):
        return True
    if isinstance(propagator, CompositePropagator):
        return all(_is_w3c(p) for p in getattr(propagator, "_propagators", (None,)))
    return False


def w3c_only() -> bool:
    """True when the global propagator is W3C trace context (+ baggage), i.e. the fast path is exact."""
    global _fast_for, _slow_for
    propagator = propagate.get_global_textmap()
    if propagator is _fast_for:
        return True
    if propagator is _slow_for:
        return False
    if _is_w3c(propagator):
        _fast_for = propagator
        return True
    _slow_for = propagator
    return False


def parse_traceparent(value: str, tracestate: str | None) -> SpanContext | None:
    """The remote span context in a `traceparent` header, or None when it is malformed (then we start a new trace).

    >>> parse_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01", None) is None
    True
    """
    value = value.strip()
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version = value[:2]
    if version == "ff" or (version == "00" and len(value) != 55) or (len(value) > 55 and value[55] != "-"):
        return None
    head = value[:55]
    # Lowercase hex only. int(x, 16) alone would also take signs, "_", "0x" and spaces, and upper case.
    if head.count("-") != 3 or not head.replace("-", "").isalnum() or "x" in head or head.lower() != head:
        return None
    try:
        trace_id = int(value[3:35], 16)
        span_id = int(value[36:52], 16)
    except ValueError:  # letters beyond f
        return None
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    return SpanContext(trace_id, span_id, True, TraceFlags(int(value[53:55], 16)), state)


def extract_context(
    traceparent: str | None,
    tracestate: str | None,
    baggage_header: str | None,
    carrier: T,
    to_headers: Callable[[T], Mapping[str, str]],
) -> Context | None:
    """The parent context of a server request; None means "start a new trace" (no header, or a malformed one).

    `to_headers(carrier)` builds the full header mapping; it runs only when a non-W3C propagator is configured.
    """
    if not w3c_only():
        return propagate.extract(to_headers(carrier))
    ctx: Context | None = None
    if traceparent:
        remote = parse_traceparent(traceparent, tracestate)
        if remote is not None:
            ctx = Context({_SPAN_KEY: NonRecordingSpan(remote)})  # what set_span_in_context builds, one copy less
    if baggage_header:
        ctx = _BAGGAGE.extract({"baggage": baggage_header}, context=ctx if ctx is not None else Context())
    return ctx


def inject_headers(span_context: SpanContext, headers: MutableMapping[str, str]) -> None:
    """Write the outgoing trace context (and the current baggage) into `headers`."""
    if not w3c_only():
        propagate.inject(headers, context=trace.set_span_in_context(NonRecordingSpan(span_context)))
        return
    if not span_context.is_valid:
        return
    headers["traceparent"] = (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags) & 0xFF:02x}"
    )
    if span_context.trace_state:
        headers["tracestate"] = span_context.trace_state.to_header()
    if baggage.get_all():
        _BAGGAGE.inject(headers)
