"""redis-py (sync, asyncio, pipelines) against a real redis-server on 127.0.0.1, exported to the real OTLP receiver,
under the SERVER span of a real uvicorn-served FastAPI app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from fastapi import FastAPI

import obsbox
from obsbox.instrumentation.integrations import redis as redis_integration
from obsbox.testing import Capture, SpanRecord, capture
from tests.instrumentation._served import get, served
from tests.instrumentation.integrations.conftest import Redis

SECRET_KEY = "session:hunter2-key"
SECRET_VALUE = "hunter2-s3cret-value"
CLIENT, SERVER, ERROR = 3, 2, 2
DB_METRIC = "db.client.operation.duration"


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture(service_name="shop-cache", console=False, schedule_delay=0.05) as c:
        yield c


def client_spans(cap: Capture, count: int) -> list[SpanRecord]:
    def ready() -> list[SpanRecord] | None:
        spans = [s for s in cap.spans() if s.kind == CLIENT]
        return spans if len(spans) >= count else None

    return cap.receiver.wait_for(ready)


def test_sync_commands_under_the_request_span_with_metrics(cap: Capture, redis_server: Redis) -> None:
    r = redis.Redis(host=redis_server.host, port=redis_server.port, db=3)
    app = FastAPI()

    @app.get("/cart")
    def cart() -> dict[str, str]:
        r.set(SECRET_KEY, SECRET_VALUE)
        return {"v": r.get(SECRET_KEY).decode()}  # type: ignore[union-attr]

    with served(obsbox.instrument(app)) as base:
        assert get(base + "/cart") == 200
    (request,) = cap.receiver.wait_for(lambda: [s for s in cap.spans() if s.kind == SERVER])
    spans = client_spans(cap, 2)
    assert [s.name for s in spans] == ["SET 3", "GET 3"]
    for span, command in zip(spans, ("SET", "GET"), strict=True):
        assert span.trace_id == request.trace_id and span.parent_span_id == request.span_id
        assert span.attributes == {
            "db.system.name": "redis", "db.namespace": "3", "db.operation.name": command,
            "server.address": "127.0.0.1", "server.port": redis_server.port,
        }
    points = cap.receiver.wait_for(lambda: [p for p in cap.metrics(DB_METRIC)
                                            if p.attributes.get("db.operation.name") == "GET"])
    assert points[-1].count == 1 and points[-1].unit == "s"
    assert points[-1].attributes == {"db.system.name": "redis", "db.namespace": "3", "db.operation.name": "GET",
                                     "server.address": "127.0.0.1", "server.port": redis_server.port}


def test_asyncio_commands_and_pipelines(cap: Capture, redis_server: Redis) -> None:
    async def run() -> None:
        r = redis.asyncio.Redis(host=redis_server.host, port=redis_server.port)
        await r.set("a", 1)
        async with r.pipeline() as pipe:
            await pipe.incr("a").incr("a").execute()
        async with r.pipeline(transaction=False) as pipe:
            await pipe.get("a").set("b", 2).execute()
        await r.aclose()

    with cap.telemetry.tracer.start_as_current_span("job") as job:
        asyncio.run(run())
    spans = client_spans(cap, 3)
    assert [s.name for s in spans] == ["SET 0", "BATCH INCRBY 0", "BATCH 0"]  # redis-py sends incr() as INCRBY
    assert spans[1].attributes["db.operation.batch.size"] == 2
    assert spans[2].attributes["db.operation.name"] == "BATCH"
    assert {s.parent_span_id for s in spans} == {format(job.get_span_context().span_id, "016x")}


def test_sync_pipeline_and_errors(cap: Capture, redis_server: Redis) -> None:
    r = redis.Redis(host=redis_server.host, port=redis_server.port)
    r.set("k", "text")
    with pytest.raises(redis.ResponseError):
        r.incr("k")
    pipe = r.pipeline()
    pipe.get("k").get("k")
    assert pipe.execute() == [b"text", b"text"]
    spans = client_spans(cap, 3)
    failed = spans[1]
    assert failed.name == "INCRBY 0" and failed.status_code == ERROR
    assert failed.attributes["error.type"] == "redis.exceptions.ResponseError"
    assert failed.attributes["db.response.status_code"] == "ERR"
    assert failed.events == [("exception", {"exception.type": "redis.exceptions.ResponseError"})]
    assert spans[2].name == "BATCH GET 0"


def test_no_key_or_value_reaches_the_receiver(cap: Capture, redis_server: Redis) -> None:
    r = redis.Redis(host=redis_server.host, port=redis_server.port)
    r.set(SECRET_KEY, SECRET_VALUE)
    r.hset(SECRET_KEY + "h", SECRET_VALUE, SECRET_VALUE)
    with pytest.raises(redis.ResponseError):
        r.lpush(SECRET_KEY, SECRET_VALUE)  # WRONGTYPE: the error quotes nothing of ours, but is checked too
    spans = client_spans(cap, 3)
    assert spans[-1].attributes["db.response.status_code"] == "WRONGTYPE"
    cap.flush()
    exported = [m.SerializeToString() for m in cap.receiver.trace_requests + cap.receiver.metric_requests]
    assert exported
    for body in exported:
        assert SECRET_KEY.encode() not in body and SECRET_VALUE.encode() not in body


def test_instrumenting_twice_records_once(cap: Capture, redis_server: Redis) -> None:
    redis_integration.instrument()
    redis_integration.instrument()
    redis.Redis(host=redis_server.host, port=redis_server.port).ping()
    assert [s.name for s in client_spans(cap, 1)] == ["PING 0"]


def test_uninstrument_and_disabled(redis_server: Redis) -> None:
    with capture(service_name="no-redis", console=False, disabled_integrations=["redis"]) as c:
        assert redis.Redis(host=redis_server.host, port=redis_server.port).ping()
        with c.telemetry.tracer.start_as_current_span("marker"):
            pass
        c.receiver.wait_for(lambda: c.spans("marker"))
        assert [s for s in c.spans() if s.kind == CLIENT] == []
    redis_integration.instrument()
