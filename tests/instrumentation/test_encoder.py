"""obsbox's OTLP encoder against the official one: identical bytes, and opentelemetry-proto decodes both the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)

from obsbox.instrumentation import _encode
from obsbox.instrumentation._pipeline import LogItem
from obsbox.instrumentation._tracer import Span
from obsbox.instrumentation._tracer import TracerProvider as LeanTracerProvider

RESOURCE_ATTRS = {"service.name": "encoder-test", "service.instance.id": "abc", "process.pid": 42,
                  "host.arch": "x86_64", "ratio": 0.5, "flag": True, "tags": ["a", "b"]}
ATTRIBUTE_KINDS: dict[str, Any] = {
    "http.request.method": "GET",
    "http.route": "/items/{item_id}",
    "http.response.status_code": 200,
    "negative": -17,
    "big": 2**62,
    "ratio": 0.125,
    "ok": True,
    "no": False,
    "unicode": "grüße ✓",
    "names": ("a", "b"),
    "codes": [1, 2, 3],
    "flags": [True, False],
    "floats": [1.5, -2.25],
    "empty": "",
}


def _sdk_spans() -> tuple[Sequence[ReadableSpan], Resource]:
    resource = Resource(RESOURCE_ATTRS)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("obsbox.test", "1.2.3")
    remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                         trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "x:1")]))
    linked = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(1))
    ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("GET /items/{item_id}", context=ctx, kind=SpanKind.SERVER,
                                      attributes=ATTRIBUTE_KINDS, links=[Link(linked, {"why": "batch"})]) as server:
        server.add_event("cache miss", {"key": "items:1", "attempt": 2})
        with tracer.start_as_current_span("db query", kind=SpanKind.CLIENT) as child:
            child.set_status(StatusCode.ERROR, "timeout")
            child.record_exception(ValueError("boom"))
        with tracer.start_as_current_span("ok", kind=SpanKind.PRODUCER) as ok:
            ok.set_status(StatusCode.OK)
    with tracer.start_as_current_span("root", kind=SpanKind.CONSUMER):
        pass
    return exporter.get_finished_spans(), resource


def _lean_copy(sdk: ReadableSpan, scope: bytes) -> Span:
    """A lean span holding exactly the SDK span's data (ids, times, attributes, events, links, status)."""
    span = Span(sdk.name, sdk.context, sdk.parent, {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}[sdk.kind.value],
                dict(sdk.attributes or {}), None, sdk.start_time or 0, scope, lambda s: None)
    for event in sdk.events:
        span.add_event(event.name, dict(event.attributes or {}), event.timestamp)
    for link in sdk.links:
        span.add_link(link.context, dict(link.attributes or {}))
    code = sdk.status.status_code
    span.status_code = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}[code]
    span.status_message = sdk.status.description or ""
    span.end_time = sdk.end_time or 0
    return span


def test_spans_encode_to_the_same_bytes_as_the_official_encoder() -> None:
    sdk_spans, resource = _sdk_spans()
    official = encode_spans(sdk_spans).SerializeToString()
    scope = _encode.encode_scope("obsbox.test", "1.2.3")
    ours = _encode.encode_spans_request(_encode.encode_resource(RESOURCE_ATTRS),
                                        [_lean_copy(s, scope) for s in sdk_spans])
    decoded_official, decoded_ours = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    decoded_official.ParseFromString(official)
    decoded_ours.ParseFromString(ours)
    assert decoded_ours == decoded_official
    assert ours == official
    spans = decoded_ours.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["db query", "ok", "GET /items/{item_id}", "root"]
    server = spans[2]
    assert server.flags == 0x300 and server.trace_state == "vendor=x:1" and server.kind == 2
    assert {kv.key for kv in server.attributes} == set(ATTRIBUTE_KINDS)


def test_every_layout_of_ids_state_and_parent_encodes_as_the_official_encoder() -> None:
    """The encoder packs the ids with the parent id when there is no trace state: each combination of a trace state
    and a parent (none, local, remote) must still give the official encoder's bytes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource(RESOURCE_ATTRS))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("obsbox.test", "1.2.3")
    for state in (TraceState(), TraceState([("vendor", "x:1")])):
        remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                             trace_flags=TraceFlags(1), trace_state=state)
        incoming = trace.set_span_in_context(NonRecordingSpan(remote))
        with tracer.start_as_current_span("remote parent", context=incoming), tracer.start_as_current_span("local"):
            pass
    with tracer.start_as_current_span("no parent", context=Context()):
        pass
    sdk_spans = exporter.get_finished_spans()
    scope = _encode.encode_scope("obsbox.test", "1.2.3")
    ours = _encode.encode_spans_request(_encode.encode_resource(RESOURCE_ATTRS),
                                        [_lean_copy(s, scope) for s in sdk_spans])
    assert ours == encode_spans(sdk_spans).SerializeToString()
    assert len(sdk_spans) == 5


def test_spans_from_the_lean_tracer_decode_as_recorded() -> None:
    finished: list[Span] = []
    provider = LeanTracerProvider(sink=finished.append)
    tracer = provider.get_tracer("lean", "0.1")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER, attributes={"a": 1}) as parent:
        with tracer.start_as_current_span("child") as child:
            child.set_attribute("b", "x")
        try:
            with tracer.start_as_current_span("failing"):
                raise RuntimeError("bad")
        except RuntimeError:
            pass
    body = _encode.encode_spans_request(_encode.encode_resource({"service.name": "s"}), finished)
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    (rs,) = request.resource_spans
    (ss,) = rs.scope_spans
    assert (ss.scope.name, ss.scope.version) == ("lean", "0.1")
    by_name = {s.name: s for s in ss.spans}
    p, c, f = by_name["parent"], by_name["child"], by_name["failing"]
    ctx = parent.get_span_context()
    assert p.trace_id == ctx.trace_id.to_bytes(16, "big") and p.span_id == ctx.span_id.to_bytes(8, "big")
    assert c.parent_span_id == p.span_id and c.trace_id == p.trace_id and p.parent_span_id == b""
    assert p.kind == 2 and c.kind == 1 and p.flags == 0x100
    assert f.status.code == 2 and "RuntimeError" in f.status.message
    assert f.events[0].name == "exception"
    assert {kv.key: kv.value.string_value for kv in f.events[0].attributes}["exception.type"] == "RuntimeError"
    assert p.end_time_unix_nano >= c.end_time_unix_nano >= c.start_time_unix_nano >= p.start_time_unix_nano


def test_logs_encode_to_the_same_bytes_as_the_official_encoder() -> None:
    resource = Resource(RESOURCE_ATTRS)
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    sdk_logger = provider.get_logger("obsbox.logger")
    span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, False, TraceFlags(1)))
    with trace.use_span(span):
        sdk_logger.emit(body="inside a span", severity_number=SeverityNumber.WARN, severity_text="WARNING",
                        attributes={"order_id": 42, "user": "ann", "ratio": 0.5}, timestamp=1_700_000_000_000_000_000,
                        observed_timestamp=1_700_000_000_000_000_123)
    sdk_logger.emit(body="outside", severity_number=SeverityNumber.INFO, severity_text="INFO",
                    timestamp=1_700_000_001_000_000_000, observed_timestamp=1_700_000_001_000_000_000)
    records: Sequence[ReadableLogRecord] = exporter.get_finished_logs()
    official = encode_logs(records).SerializeToString()
    ours = _encode.encode_logs_request(_encode.encode_resource(RESOURCE_ATTRS),
                                       [LogItem.from_api(r.log_record, "obsbox.logger") for r in records])
    a, b = ExportLogsServiceRequest(), ExportLogsServiceRequest()
    a.ParseFromString(official)
    b.ParseFromString(ours)
    assert b == a
    assert ours == official
    first = b.resource_logs[0].scope_logs[0].log_records[0]
    assert first.trace_id.hex() == f"{0xABC:032x}" and first.span_id.hex() == f"{0xDEF:016x}" and first.flags == 1


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)])
def test_varints_match_protobuf(value: int) -> None:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    expected = AnyValue(int_value=value).SerializeToString()
    assert _encode.any_value(value) == expected


def test_attribute_cache_keeps_types_apart() -> None:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    encoded = [_encode.attributes(b"\x4a", {"k": v})[0] for v in (1, True, 1.0, "1")]
    kinds = []
    for field in encoded:
        kv = KeyValue()
        kv.ParseFromString(field[2:])  # strip the tag and the one-byte length
        kinds.append(kv.value.WhichOneof("value"))
    assert kinds == ["int_value", "bool_value", "double_value", "string_value"]
