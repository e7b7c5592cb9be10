"""grpcio client -> server on 127.0.0.1 (unary and streaming both ways), exported to the real OTLP receiver: one
trace across the call, the RPC conventions' names, status codes, durations."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from obsbox.instrumentation.integrations import grpc as grpc_integration
from obsbox.testing import Capture, SpanRecord, capture

CLIENT, SERVER, ERROR = 3, 2, 2
SECRET = b"hunter2-s3cret-payload"


def _reserve(request: bytes, context: Any) -> bytes:
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such item")
    if request == b"crash":
        raise RuntimeError("boom")
    return b"ok:" + request


def _watch(request: bytes, context: Any) -> Iterator[bytes]:
    for i in range(3):
        yield b"%d" % i


def _upload(requests: Iterator[bytes], context: Any) -> bytes:
    return b"%d" % sum(len(r) for r in requests)


def _chat(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for r in requests:
        yield r.upper()


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture(service_name="shop-rpc", console=False, schedule_delay=0.05) as c:
        yield c


@pytest.fixture
def channel(cap: Capture) -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shop.Inventory", {
        "Reserve": grpc.unary_unary_rpc_method_handler(_reserve),
        "Watch": grpc.unary_stream_rpc_method_handler(_watch),
        "Upload": grpc.stream_unary_rpc_method_handler(_upload),
        "Chat": grpc.stream_stream_rpc_method_handler(_chat),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ch
    finally:
        ch.close()
        server.stop(None)


def spans_of(cap: Capture, count: int) -> list[SpanRecord]:
    def ready() -> list[SpanRecord] | None:
        spans = [s for s in cap.spans() if s.name.startswith("shop.Inventory/")]
        return spans if len(spans) >= count else None

    return cap.receiver.wait_for(ready)


def test_unary_call_is_one_trace_client_to_server(cap: Capture, channel: grpc.Channel) -> None:
    with cap.telemetry.tracer.start_as_current_span("job") as job:
        assert channel.unary_unary("/shop.Inventory/Reserve")(SECRET, timeout=10) == b"ok:" + SECRET
    client = next(s for s in spans_of(cap, 2) if s.kind == CLIENT)
    server = next(s for s in spans_of(cap, 2) if s.kind == SERVER)
    assert client.name == server.name == "shop.Inventory/Reserve"
    assert client.parent_span_id == format(job.get_span_context().span_id, "016x")
    assert server.trace_id == client.trace_id and server.parent_span_id == client.span_id
    assert client.attributes["rpc.system.name"] == "grpc"
    assert client.attributes["rpc.method"] == "shop.Inventory/Reserve"
    assert client.attributes["rpc.response.status_code"] == "OK"
    assert client.attributes["server.address"] == "127.0.0.1" and isinstance(client.attributes["server.port"], int)
    assert server.attributes["rpc.response.status_code"] == "OK"
    durations = cap.receiver.wait_for(lambda: cap.metrics("rpc.client.call.duration")
                                      and cap.metrics("rpc.server.call.duration"))
    assert durations
    client_point = cap.metrics("rpc.client.call.duration")[-1]
    assert client_point.unit == "s" and client_point.count == 1
    assert client_point.attributes["rpc.method"] == "shop.Inventory/Reserve"
    assert client_point.attributes["rpc.response.status_code"] == "OK"
    exported = [m.SerializeToString() for m in cap.receiver.trace_requests + cap.receiver.metric_requests]
    assert all(SECRET not in body for body in exported)  # messages are never recorded


def test_streaming_calls_all_four_shapes(cap: Capture, channel: grpc.Channel) -> None:
    assert list(channel.unary_stream("/shop.Inventory/Watch")(b"x", timeout=10)) == [b"0", b"1", b"2"]
    assert channel.stream_unary("/shop.Inventory/Upload")(iter([b"ab", b"c"]), timeout=10) == b"3"
    assert list(channel.stream_stream("/shop.Inventory/Chat")(iter([b"a", b"b"]), timeout=10)) == [b"A", b"B"]
    spans = spans_of(cap, 6)
    for method in ("Watch", "Upload", "Chat"):
        (client,) = [s for s in spans if s.kind == CLIENT and s.name == f"shop.Inventory/{method}"]
        (server,) = [s for s in spans if s.kind == SERVER and s.name == f"shop.Inventory/{method}"]
        assert server.trace_id == client.trace_id and server.parent_span_id == client.span_id
        assert client.attributes["rpc.response.status_code"] == server.attributes["rpc.response.status_code"] == "OK"


def test_status_codes_and_errors(cap: Capture, channel: grpc.Channel) -> None:
    reserve = channel.unary_unary("/shop.Inventory/Reserve")
    with pytest.raises(grpc.RpcError) as missing:
        reserve(b"missing", timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as crash:
        reserve(b"crash", timeout=10)
    assert crash.value.code() == grpc.StatusCode.UNKNOWN
    spans = spans_of(cap, 4)
    clients = [s for s in spans if s.kind == CLIENT]
    servers = [s for s in spans if s.kind == SERVER]
    assert [(s.attributes["rpc.response.status_code"], s.attributes.get("error.type"), s.status_code)
            for s in clients] == [("NOT_FOUND", "NOT_FOUND", ERROR), ("UNKNOWN", "UNKNOWN", ERROR)]
    # On the server NOT_FOUND is the caller's problem, not an error; an exception is (UNKNOWN, its class).
    by_code = {s.attributes["rpc.response.status_code"]: s for s in servers}
    assert by_code["NOT_FOUND"].status_code != ERROR and "error.type" not in by_code["NOT_FOUND"].attributes
    assert by_code["UNKNOWN"].status_code == ERROR and by_code["UNKNOWN"].attributes["error.type"] == "RuntimeError"


def test_instrumenting_twice_adds_nothing_twice(cap: Capture) -> None:
    grpc_integration.instrument()
    grpc_integration.instrument()
    original = getattr(grpc.insecure_channel, "__obsbox_original__")  # noqa: B009
    assert not hasattr(original, "__obsbox_original__")
    grpc_integration.uninstrument()
    assert grpc.insecure_channel is original
    grpc_integration.instrument()


def test_otlp_export_over_grpc_records_nothing_of_itself() -> None:
    """The collector's own methods are left alone: exporting over an intercepted channel adds no span."""
    from obsbox.testing import OTLPReceiver  # noqa: F401 - the HTTP receiver is the one capture() uses

    with capture(service_name="grpc-export", console=False, schedule_delay=0.05) as c:
        ch = grpc.insecure_channel("127.0.0.1:9")  # nothing listens: the call fails fast
        call = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError):
            call(b"", timeout=2)
        ch.close()
        with c.telemetry.tracer.start_as_current_span("marker"):
            pass
        c.receiver.wait_for(lambda: c.spans("marker"))
        assert [s.name for s in c.spans()] == ["marker"]
