"""Noting the current span for the profiler leaves the request path's behaviour as it is."""

from __future__ import annotations

import contextvars

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context

from obsbox.instrumentation._tracer import attach_span, detach_span
from obsbox.profiling import _active


@pytest.mark.parametrize("profiling", [False, True])
def test_detach_span_from_another_context_raises_as_without_profiling(profiling: bool) -> None:
    span = trace.NonRecordingSpan(trace.SpanContext(1, 2, False))
    if profiling:
        assert _active.enable()
    try:
        token = attach_span(span, Context())
        # A token used in another context than the one it was made in: ContextVar.reset raises ValueError; the
        # request path reports it itself (it must not become the API's logged "Failed to detach context").
        with pytest.raises(ValueError):
            contextvars.copy_context().run(detach_span, token)
        detach_span(token)
        assert trace.get_current_span() is not span
    finally:
        if profiling:
            _active.disable()
    assert context_api._RUNTIME_CONTEXT.__class__.__name__ == "ContextVarsRuntimeContext"
