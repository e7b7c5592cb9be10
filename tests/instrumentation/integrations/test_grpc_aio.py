"""grpc.aio client -> grpc.aio server on 127.0.0.1 (unary and streaming both ways, coroutine and async-generator
handlers), exported to the real OTLP receiver: one trace across the call, the handler's own spans under the SERVER
span, status codes, durations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc import aio

from obsbox.instrumentation.integrations import grpc as grpc_integration
from obsbox.testing import Capture, SpanRecord, capture
from tests.instrumentation.integrations.test_grpc import CLIENT, ERROR, SECRET, SERVER


async def _reserve(request: bytes, context: Any) -> bytes:
    if request == b"missing":
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such item")
    if request == b"crash":
        raise RuntimeError("boom")
    from opentelemetry import trace

    with trace.get_tracer("shop").start_as_current_span("reserve stock"):  # the handler's own span
        await asyncio.sleep(0)
    return b"ok:" + request


async def _watch(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(3):
        yield b"%d" % i


async def _upload(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return b"%d" % sum([len(r) async for r in requests])


async def _chat(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for r in requests:
        yield r.upper()


def _sync_reserve(request: bytes, context: Any) -> bytes:  # a sync handler on an aio server: run in its pool
    return b"sync:" + request


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture(service_name="shop-aio", console=False, schedule_delay=0.05) as c:
        yield c


def run(scenario: Any) -> Any:
    """Serve the shop.Inventory methods on a grpc.aio server and run `scenario(channel)` against it."""
    from concurrent import futures

    async def main() -> Any:
        server = aio.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("shop.Inventory", {
            "Reserve": grpc.unary_unary_rpc_method_handler(_reserve),
            "SyncReserve": grpc.unary_unary_rpc_method_handler(_sync_reserve),
            "Watch": grpc.unary_stream_rpc_method_handler(_watch),
            "Upload": grpc.stream_unary_rpc_method_handler(_upload),
            "Chat": grpc.stream_stream_rpc_method_handler(_chat),
        }),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await scenario(channel)
        finally:
            await server.stop(None)

    return asyncio.run(main())


def spans_of(cap: Capture, count: int) -> list[SpanRecord]:
    def ready() -> list[SpanRecord] | None:
        spans = [s for s in cap.spans() if s.name.startswith("shop.Inventory/")]
        return spans if len(spans) >= count else None

    return cap.receiver.wait_for(ready)


def test_unary_call_is_one_trace_client_to_server(cap: Capture) -> None:
    async def scenario(channel: aio.Channel) -> tuple[bytes, int]:
        with cap.telemetry.tracer.start_as_current_span("job") as job:
            response = await channel.unary_unary("/shop.Inventory/Reserve")(SECRET, timeout=10)
        return response, job.get_span_context().span_id

    response, job_id = run(scenario)
    assert response == b"ok:" + SECRET
    spans = spans_of(cap, 2)
    (client,) = [s for s in spans if s.kind == CLIENT]
    (server,) = [s for s in spans if s.kind == SERVER]
    assert client.name == server.name == "shop.Inventory/Reserve"
    assert client.parent_span_id == format(job_id, "016x")
    assert server.trace_id == client.trace_id and server.parent_span_id == client.span_id
    (own,) = cap.receiver.wait_for(lambda: cap.spans("reserve stock"))
    assert own.trace_id == server.trace_id and own.parent_span_id == server.span_id
    assert client.attributes["rpc.system.name"] == "grpc" and client.attributes["rpc.method"] == "shop.Inventory/Reserve"
    assert client.attributes["rpc.response.status_code"] == server.attributes["rpc.response.status_code"] == "OK"
    assert client.attributes["server.address"] == "127.0.0.1" and isinstance(client.attributes["server.port"], int)
    assert cap.receiver.wait_for(lambda: cap.metrics("rpc.client.call.duration")
                                 and cap.metrics("rpc.server.call.duration"))
    point = cap.metrics("rpc.server.call.duration")[-1]
    assert point.count == 1 and point.attributes["rpc.response.status_code"] == "OK"
    exported = [m.SerializeToString() for m in cap.receiver.trace_requests + cap.receiver.metric_requests]
    assert all(SECRET not in body for body in exported)  # messages are never recorded


def test_streaming_calls_all_four_shapes_and_a_sync_handler(cap: Capture) -> None:
    async def requests() -> AsyncIterator[bytes]:
        for r in (b"ab", b"c"):
            yield r

    async def scenario(channel: aio.Channel) -> list[Any]:
        watched = [r async for r in channel.unary_stream("/shop.Inventory/Watch")(b"x", timeout=10)]
        uploaded = await channel.stream_unary("/shop.Inventory/Upload")(requests(), timeout=10)
        chat = channel.stream_stream("/shop.Inventory/Chat")(timeout=10)
        await chat.write(b"a")
        await chat.write(b"b")
        await chat.done_writing()
        chatted = [await chat.read(), await chat.read()]
        synced = await channel.unary_unary("/shop.Inventory/SyncReserve")(b"z", timeout=10)
        return [watched, uploaded, chatted, synced]

    assert run(scenario) == [[b"0", b"1", b"2"], b"3", [b"A", b"B"], b"sync:z"]
    spans = spans_of(cap, 8)
    for method in ("Watch", "Upload", "Chat", "SyncReserve"):
        (client,) = [s for s in spans if s.kind == CLIENT and s.name == f"shop.Inventory/{method}"]
        (server,) = [s for s in spans if s.kind == SERVER and s.name == f"shop.Inventory/{method}"]
        assert server.trace_id == client.trace_id and server.parent_span_id == client.span_id, method
        assert client.attributes["rpc.response.status_code"] == "OK", method
        assert server.attributes["rpc.response.status_code"] == "OK", method


def test_status_codes_and_errors(cap: Capture) -> None:
    async def scenario(channel: aio.Channel) -> list[grpc.StatusCode]:
        codes = []
        for request in (b"missing", b"crash"):
            with pytest.raises(aio.AioRpcError) as failed:
                await channel.unary_unary("/shop.Inventory/Reserve")(request, timeout=10)
            codes.append(failed.value.code())
        return codes

    assert run(scenario) == [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNKNOWN]
    spans = spans_of(cap, 4)
    clients = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_time_unix_nano)
    assert [(s.attributes["rpc.response.status_code"], s.attributes.get("error.type"), s.status_code)
            for s in clients] == [("NOT_FOUND", "NOT_FOUND", ERROR), ("UNKNOWN", "UNKNOWN", ERROR)]
    by_code = {s.attributes["rpc.response.status_code"]: s for s in spans if s.kind == SERVER}
    assert by_code["NOT_FOUND"].status_code != ERROR and "error.type" not in by_code["NOT_FOUND"].attributes
    assert by_code["UNKNOWN"].status_code == ERROR and by_code["UNKNOWN"].attributes["error.type"] == "RuntimeError"


def test_instrumenting_twice_adds_nothing_twice(cap: Capture) -> None:
    grpc_integration.instrument()
    grpc_integration.instrument()
    for function in (aio.insecure_channel, aio.secure_channel, aio.server):
        original = getattr(function, "__obsbox_original__")  # noqa: B009
        assert not hasattr(original, "__obsbox_original__")

    async def scenario(channel: aio.Channel) -> bytes:
        response: bytes = await channel.unary_unary("/shop.Inventory/SyncReserve")(b"once", timeout=10)
        return response

    assert run(scenario) == b"sync:once"
    spans = spans_of(cap, 2)
    assert sorted(s.kind for s in spans) == [SERVER, CLIENT]  # one of each
    grpc_integration.uninstrument()
    assert not hasattr(aio.insecure_channel, "__obsbox_original__")
    grpc_integration.instrument()


def test_a_done_call_whose_code_still_waits_is_ended_by_a_task(cap: Capture) -> None:
    """A streaming call's span ends in its done callback, reading the finished call's code() without a task; were
    that coroutine to wait all the same, a task reads it instead (a call object standing in for grpc's, whose
    code() yields to the loop once)."""

    class Details:
        method = "/shop.Inventory/Watch"

    class Call:
        async def code(self) -> grpc.StatusCode:
            await asyncio.sleep(0)
            return grpc.StatusCode.UNAVAILABLE

    async def scenario() -> None:
        started = grpc_integration._ClientCall.begin(Details(), "127.0.0.1", 50051)
        assert started is not None
        grpc_integration._end_when_done(started[0], Call())
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    (span,) = spans_of(cap, 1)
    assert span.kind == CLIENT and span.attributes["rpc.response.status_code"] == "UNAVAILABLE"
    assert span.attributes["error.type"] == "UNAVAILABLE" and span.status_code == ERROR
