"""Generated spans, events and log records through the public APIs, into a real receiver, compared with what the
OpenTelemetry SDK and its OTLP exporter send for the same calls (issue #19, "Keep the probe").

Per example, the same calls go to obsbox's global tracer (exporting to one receiver) and to an SDK TracerProvider
with the OTLP/HTTP exporter (to another); both are decoded with opentelemetry-proto and compared field by field.
Where the SDK loses the span (a lone surrogate fails its encoder), obsbox must still export it. Nothing may raise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import _logs as logs_api
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import StatusCode

import obsbox
from obsbox import logger
from obsbox.instrumentation._redact import redact_text
from obsbox.instrumentation.logs import is_sensitive
from obsbox.testing import OTLPReceiver, SpanRecord

EXAMPLES = 150
PROBE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                        HealthCheck.data_too_large])

# Text as applications produce it, lone surrogates included (str(bytes decoded with surrogateescape)).
text = st.text(st.characters(codec=None), max_size=40)
keys = st.text(st.characters(codec=None), min_size=1, max_size=20)
int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
scalars = st.one_of(text, int64, st.floats(allow_nan=True, allow_infinity=True), st.booleans())
values = st.one_of(scalars, st.lists(text, max_size=4), st.lists(int64, max_size=4), st.lists(st.booleans(), max_size=4),
                   st.lists(st.floats(allow_nan=False), max_size=4))
attributes = st.dictionaries(keys, values, max_size=6)
events = st.lists(st.tuples(text, attributes), max_size=4)
spans = st.lists(st.fixed_dictionaries({
    "name": text, "attributes": attributes, "late": attributes, "events": events,
    "status": st.one_of(st.none(), text), "exception": st.one_of(st.none(), text),
}), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def ours() -> Iterator[tuple[OTLPReceiver, obsbox.Telemetry]]:
    with OTLPReceiver() as receiver:
        telemetry = obsbox.configure(service_name="fuzz", endpoint=receiver.endpoint, schedule_delay=0.05,
                                     metrics_exporter="none", console=False)
        try:
            yield receiver, telemetry
        finally:
            telemetry.shutdown()


@pytest.fixture(scope="module")
def sdk() -> Iterator[tuple[OTLPReceiver, SdkTracerProvider]]:
    with OTLPReceiver() as receiver:
        provider = SdkTracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint + "/v1/traces")))
        try:
            yield receiver, provider
        finally:
            provider.shutdown()


def _run(tracer: Any, plan: list[dict[str, Any]], marker: int) -> None:
    for i, spec in enumerate(plan):
        with tracer.start_as_current_span(spec["name"], attributes={**spec["attributes"], "probe.id": marker * 10 + i},
                                          record_exception=False, set_status_on_exception=False) as span:
            for key, value in spec["late"].items():
                span.set_attribute(key, value)
            for name, attrs in spec["events"]:
                span.add_event(name, attrs)
            if spec["exception"] is not None:
                span.record_exception(ValueError(spec["exception"]))
            if spec["status"] is not None:
                span.set_status(StatusCode.ERROR, spec["status"])


def _norm(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if not k.startswith("exception.stacktrace")}
    return value


def _replaced(key: str, value: Any) -> bool:
    """An attribute whose text held a lone surrogate: the SDK's exporter leaves it out, obsbox sends it with "?" in
    place of the surrogate (keeping the rest). Such attributes (and those with a real "?") are compared by neither."""
    texts = [key] + [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return any("?" in t for t in texts)


def _view(span: SpanRecord, sdk: bool) -> dict[str, Any]:
    events = [(name, _norm({k: v for k, v in attrs.items() if k != "exception.escaped" and not _replaced(k, v)}))
              for name, attrs in span.events]
    if sdk:  # obsbox redacts the URLs quoted in texts it cannot know are safe; the SDK does not
        events = [(n, {k: redact_text(v) if k == "exception.message" and isinstance(v, str) else v
                   for k, v in a.items()}) for n, a in events]
    attributes = {k: v for k, v in span.attributes.items() if not _replaced(k, v)}
    return {"name": span.name, "attributes": _norm(attributes), "events": events,
            "status": (span.status_code, redact_text(span.status_message) if sdk else span.status_message)}


def _by_id(receiver: OTLPReceiver) -> dict[int, SpanRecord]:
    return {int(s.attributes["probe.id"]): s for s in receiver.spans() if "probe.id" in s.attributes}


_counter = iter(range(1, 1 << 30))


@PROBE
@given(plan=spans)
def test_spans_match_the_sdk(ours: tuple[OTLPReceiver, obsbox.Telemetry],
                             sdk: tuple[OTLPReceiver, SdkTracerProvider], plan: list[dict[str, Any]]) -> None:
    receiver, telemetry = ours
    sdk_receiver, provider = sdk
    marker = next(_counter)
    _run(trace.get_tracer("fuzz"), plan, marker)  # must not raise
    _run(provider.get_tracer("fuzz"), plan, marker)
    assert telemetry.force_flush(10)
    mine, theirs = _by_id(receiver), _by_id(sdk_receiver)
    for i in range(len(plan)):
        key = marker * 10 + i
        assert key in mine, f"obsbox lost span {i} of {plan!r}"  # obsbox keeps what the SDK keeps, and more
        if key in theirs:
            assert _view(mine[key], sdk=False) == _view(theirs[key], sdk=True)


log_fields = st.dictionaries(st.text(st.characters(codec="utf-8", categories=["Ll", "Lu", "Nd"]), min_size=1,
                                     max_size=12).filter(lambda k: not is_sensitive(k) and k not in
                                                         ("trace_id", "span_id", "message", "record")),
                             scalars, max_size=4)


@PROBE
@given(message=text, fields=log_fields)
def test_log_records_never_raise_and_arrive_as_written(ours: tuple[OTLPReceiver, obsbox.Telemetry], message: str,
                                                       fields: dict[str, Any]) -> None:
    receiver, telemetry = ours
    marker = next(_counter)
    logger.bind(probe_id=marker).info(message, **fields)  # loguru formats with the fields: must never raise
    logs_api.get_logger("fuzz.api").emit(body=message, attributes={**fields, "probe_id": marker})
    assert telemetry.force_flush(10)
    records = [r for r in receiver.logs() if r.attributes.get("probe_id") == marker]
    assert len(records) == 2, receiver.summary()
    try:
        formatted = message.format(**fields) if fields else message
    except Exception:  # noqa: BLE001 - what loguru cannot format is kept as written
        formatted = message
    expected = redact_text(formatted).encode("utf-8", "replace").decode("utf-8")
    by_scope = {r.scope: r for r in records}
    assert by_scope["obsbox.logger"].body == expected
    assert by_scope["fuzz.api"].body == redact_text(message).encode("utf-8", "replace").decode("utf-8")
    assert _norm({k: v for k, v in by_scope["fuzz.api"].attributes.items() if k != "probe_id"}) == _norm(
        {k: redact_text(v).encode("utf-8", "replace").decode("utf-8") if isinstance(v, str) else v
         for k, v in fields.items()})
