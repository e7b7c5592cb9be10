"""Celery across two processes: tasks sent from this process (configured with capture()) run in a real prefork
worker process (its own obsbox configuration, exporting from the forked child) over a real Redis broker; both
export to the same real OTLP receiver, and the worker's spans join the producer's trace."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from obsbox.testing import Capture, MetricPoint, SpanRecord, capture
from tests.instrumentation.integrations.conftest import Redis

ROOT = Path(__file__).resolve().parents[3]
PRODUCER, CONSUMER, ERROR = 4, 5, 2


@pytest.fixture
def worker(redis_server: Redis) -> Iterator[tuple[Capture, object]]:
    broker = f"redis://{redis_server.host}:{redis_server.port}/5"
    os.environ["CELERY_TEST_BROKER"] = broker
    with capture(service_name="shop-web", console=False, schedule_delay=0.05) as cap:
        from tests.instrumentation.integrations import _celery_app

        _celery_app.app.conf.update(broker_url=broker, result_backend=broker)
        env = {**os.environ, "OBSBOX_TEST_WORKER": "1", "OBSBOX_ENDPOINT": cap.receiver.endpoint,
               "PYTHONPATH": str(ROOT), "CELERY_TEST_BROKER": broker, "OBSBOX_METRIC_EXPORT_INTERVAL": "300"}
        env.pop("OTEL_SERVICE_NAME", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.instrumentation.integrations._celery_app", "worker",
             "-P", "prefork", "-c", "1", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield cap, _celery_app
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _spans(cap: Capture, predicate: object, count: int) -> list[SpanRecord]:
    def ready() -> list[SpanRecord] | None:
        spans = [s for s in cap.spans() if predicate(s)]  # type: ignore[operator]
        return spans if len(spans) >= count else None

    return cap.receiver.wait_for(ready, timeout=30)


def test_the_task_span_joins_the_producers_trace_across_processes(worker: tuple[Capture, object]) -> None:
    cap, app = worker
    with cap.telemetry.tracer.start_as_current_span("checkout") as checkout:
        result = app.fulfil.delay("o-1")  # type: ignore[attr-defined]
    assert result.get(timeout=60) == "fulfilled o-1"
    (send,) = _spans(cap, lambda s: s.kind == PRODUCER, 1)
    (process,) = _spans(cap, lambda s: s.kind == CONSUMER, 1)
    (pack,) = _spans(cap, lambda s: s.name == "pack", 1)
    root = format(checkout.get_span_context().span_id, "016x")
    assert send.name == "send shop.fulfil" and send.parent_span_id == root
    assert process.name == "process shop.fulfil"
    assert process.trace_id == send.trace_id and process.parent_span_id == send.span_id
    assert pack.trace_id == send.trace_id and pack.parent_span_id == process.span_id
    assert send.resource["service.name"] == "shop-web" and process.resource["service.name"] == "shop-worker"
    assert process.resource["process.pid"] != os.getpid()
    assert process.attributes["messaging.system"] == "celery"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["celery.task.name"] == "shop.fulfil"
    assert process.attributes["celery.task.state"] == "SUCCESS"
    assert process.attributes["messaging.message.id"] == result.id
    assert "o-1" not in str(send.attributes) + str(process.attributes)  # arguments are never recorded
    points = cap.receiver.wait_for(lambda: cap.metrics("messaging.process.duration"), timeout=30)
    assert points[-1].attributes["celery.task.name"] == "shop.fulfil" and points[-1].unit == "s"
    assert cap.receiver.wait_for(lambda: cap.metrics("messaging.client.operation.duration"))


def test_failures_and_retries(worker: tuple[Capture, object]) -> None:
    cap, app = worker
    failed = app.fulfil.delay("fail")  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        failed.get(timeout=60)
    assert app.fulfil.delay("retry").get(timeout=60) == "fulfilled retry"  # type: ignore[attr-defined]
    runs = _spans(cap, lambda s: s.kind == CONSUMER, 3)
    states = sorted(str(s.attributes["celery.task.state"]) for s in runs)
    assert states == ["FAILURE", "RETRY", "SUCCESS"]
    (failure,) = [s for s in runs if s.attributes["celery.task.state"] == "FAILURE"]
    assert failure.status_code == ERROR and failure.attributes["error.type"] == "ValueError"
    assert "cannot fulfil" not in failure.status_message

    def retries() -> list[MetricPoint]:
        return [p for p in cap.metrics("obsbox.celery.task.retries")
                if p.attributes.get("celery.task.name") == "shop.fulfil" and p.resource["process.pid"] != os.getpid()]

    point = cap.receiver.wait_for(retries, timeout=30)[-1]  # counted in the worker, cumulative
    assert point.kind == "sum" and point.monotonic and point.value == 1 and point.unit == "{retry}"
    assert point.attributes["messaging.system"] == "celery"


def test_the_worker_reports_the_backlog_of_its_queue(worker: tuple[Capture, object]) -> None:
    """Six 1.5 s tasks for one worker process that takes one message at a time: the others wait in Redis, and the
    worker's main process reports how many, going down to 0 as they run."""
    cap, app = worker
    results = [app.restock.delay(1.5) for _ in range(6)]  # type: ignore[attr-defined]

    def backlog() -> list[MetricPoint]:
        return [p for p in cap.metrics("obsbox.celery.queue.messages")
                if p.attributes.get("messaging.destination.name") == "celery"]

    assert cap.receiver.wait_for(lambda: [p for p in backlog() if p.value >= 3], timeout=30)
    for result in results:
        result.get(timeout=60)
    assert cap.receiver.wait_for(lambda: backlog()[-1].value == 0 or None, timeout=30)
    points = backlog()
    assert {p.kind for p in points} == {"gauge"} and points[-1].unit == "{message}"
    assert len({p.resource["process.pid"] for p in points}) == 1  # the main process only, not the pool's child
    assert points[0].resource["service.name"] == "shop-worker"


def test_a_slow_task_logs_one_structured_line_in_its_trace(worker: tuple[Capture, object]) -> None:
    """The worker's threshold is the default 1 s: a 1.2 s run logs one line, a fast run none."""
    cap, app = worker
    assert app.fulfil.delay("quick").get(timeout=60) == "fulfilled quick"  # type: ignore[attr-defined]
    app.restock.delay(1.2).get(timeout=60)  # type: ignore[attr-defined]
    (run,) = _spans(cap, lambda s: s.name == "process shop.restock", 1)
    (line,) = cap.receiver.wait_for(lambda: [r for r in cap.logs() if str(r.body).startswith("slow task")], timeout=30)
    assert re.fullmatch(r"slow task: shop\.restock took \d+\.\d{3} s", str(line.body))
    assert line.severity_text == "WARNING"
    assert line.attributes["celery.task.name"] == "shop.restock"
    assert line.attributes["celery.task.state"] == "SUCCESS"
    assert 1.2 <= float(line.attributes["duration_s"]) < 30  # type: ignore[arg-type]
    assert line.trace_id == run.trace_id and line.span_id == run.span_id
    _spans(cap, lambda s: s.name == "process shop.fulfil", 1)
    assert len([r for r in cap.logs() if str(r.body).startswith("slow task")]) == 1


def test_an_unreachable_broker_gives_no_backlog_reading_and_breaks_nothing() -> None:
    """The backlog gauge's reading runs in the metric exporter: with nothing listening at the broker's address it
    gives no observation, raises nothing, and every other metric is still exported."""
    from celery import Celery, signals

    from obsbox.instrumentation.integrations import celery as celery_integration
    from tests._processes import free_port

    with capture(service_name="worker-down", console=False, schedule_delay=0.05) as cap:
        app = Celery("down", broker=f"redis://127.0.0.1:{free_port()}/0")
        try:
            signals.worker_ready.send(sender=type("Consumer", (), {"app": app})())
            cap.telemetry.force_flush()
            assert cap.receiver.wait_for(lambda: cap.metrics("process.cpu.time"), timeout=30)
            assert not cap.metrics("obsbox.celery.queue.messages")
        finally:
            celery_integration.uninstrument()  # forgets the app: the gauge reads nothing from now on
            celery_integration.instrument()
