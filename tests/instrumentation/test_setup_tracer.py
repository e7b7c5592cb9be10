"""The lean tracer behaves as the OpenTelemetry API promises: context, nesting, decorators, exceptions, status."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from obsbox.instrumentation._tracer import Sampler, Span, TracerProvider


@pytest.fixture
def finished() -> list[Span]:
    return []


@pytest.fixture
def tracer(finished: list[Span]) -> trace.Tracer:
    return TracerProvider(sink=finished.append).get_tracer("test", "1.0")


def test_current_span_and_nesting(tracer: trace.Tracer, finished: list[Span]) -> None:
    assert not trace.get_current_span().get_span_context().is_valid
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer:
        assert trace.get_current_span() is outer
        with tracer.start_as_current_span("inner") as inner:
            assert trace.get_current_span() is inner
        assert trace.get_current_span() is outer
    assert not trace.get_current_span().get_span_context().is_valid
    assert [s.name for s in finished] == ["inner", "outer"]
    parent = finished[0].parent
    assert parent is not None and parent.span_id == outer.get_span_context().span_id
    assert finished[0].context.trace_id == finished[1].context.trace_id and finished[1].parent is None


def test_decorator_starts_one_span_per_call(tracer: trace.Tracer, finished: list[Span]) -> None:
    @tracer.start_as_current_span("sync work")
    def work(x: int) -> int:
        return trace.get_current_span().get_span_context().span_id + x

    @tracer.start_as_current_span("async work")
    async def async_work() -> int:
        return trace.get_current_span().get_span_context().span_id

    ids = {work(0), work(0), asyncio.run(async_work())}
    assert len(ids) == 3 and 0 not in ids
    assert sorted(s.name for s in finished) == ["async work", "sync work", "sync work"]


def test_exceptions_are_recorded_and_set_the_status(tracer: trace.Tracer, finished: list[Span]) -> None:
    with pytest.raises(ValueError), tracer.start_as_current_span("failing"):
        raise ValueError("bad input")
    (span,) = finished
    assert span.status_code == 2 and span.status_message == "ValueError: bad input"
    (event,) = span.events or []
    assert event[0] == "exception" and event[2]["exception.type"] == "ValueError"
    assert "bad input" in event[2]["exception.stacktrace"]


def test_status_rules_follow_the_sdk(tracer: trace.Tracer) -> None:
    span = tracer.start_span("s")
    span.set_status(StatusCode.OK, "ignored for OK")
    span.set_status(Status(StatusCode.ERROR, "too late"))  # OK is final
    assert isinstance(span, Span) and (span.status_code, span.status_message) == (1, "")


def test_ended_spans_are_immutable_and_end_once(tracer: trace.Tracer, finished: list[Span]) -> None:
    span = tracer.start_span("once", attributes={"a": 1})
    span.end()
    span.end()
    span.set_attribute("b", 2)
    span.update_name("renamed")
    assert len(finished) == 1 and finished[0].name == "once" and finished[0].attributes == {"a": 1}
    assert not span.is_recording()


def test_unsampled_spans_propagate_but_record_nothing(finished: list[Span]) -> None:
    tracer = TracerProvider(sink=finished.append, sampler=Sampler("always_off")).get_tracer("t")
    with tracer.start_as_current_span("dropped") as span:
        ctx = span.get_span_context()
        assert ctx.is_valid and not ctx.trace_flags.sampled and not span.is_recording()
        with tracer.start_as_current_span("child") as child:
            assert child.get_span_context().trace_id == ctx.trace_id
    assert finished == []


def test_links_and_events(tracer: trace.Tracer, finished: list[Span]) -> None:
    other = tracer.start_span("other")
    with tracer.start_as_current_span("linked", links=[trace.Link(other.get_span_context(), {"k": "v"})]) as span:
        span.add_event("checkpoint", {"n": 1}, timestamp=123)
        span.add_link(other.get_span_context())
    (s,) = [x for x in finished if x.name == "linked"]
    assert s.links is not None and len(s.links) == 2 and s.links[0][3] == {"k": "v"}
    assert s.events == [("checkpoint", 123, {"n": 1})]


def test_an_inactive_provider_passes_the_incoming_context_through(finished: list[Span]) -> None:
    # Before configure() or after shutdown(): like the API's no-op tracer. A stopped pipeline must not mint an
    # unsampled root that client hooks would then propagate and make every downstream service drop its trace.
    provider = TracerProvider(sink=finished.append, sampler=Sampler("always_off"))
    provider.shutdown_done = True
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as span:
        assert span is trace.INVALID_SPAN
    incoming = trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1))
    parent = trace.set_span_in_context(trace.NonRecordingSpan(incoming))
    with tracer.start_as_current_span("child", context=parent) as child:
        assert child.get_span_context() == incoming and not child.is_recording()
    assert finished == []


def test_the_opentelemetry_api_layout_the_request_path_relies_on() -> None:
    # The tracer and the histogram read SpanContext by index and the current span straight from the context by its
    # key, skipping the API's layers of calls; a change of either in opentelemetry-api must fail here.
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    from opentelemetry.trace.propagation import _SPAN_KEY

    state = TraceState([("vendor", "x")])
    context = SpanContext(0xABC, 0xDEF, True, TraceFlags(1), state)
    assert tuple(context) == (0xABC, 0xDEF, True, TraceFlags(1), state, True)
    assert SpanContext(0, 0xDEF, False)[5] is False
    span = NonRecordingSpan(context)
    assert trace.set_span_in_context(span).get(_SPAN_KEY) is span
    assert [kind.value + 1 for kind in SpanKind] == [1, 2, 3, 4, 5]  # OTLP's numbering of the same kinds
