"""Worker pools: results, bounded queues, trace context flowing from submitter to task, and the pool metrics."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from concurrent.futures import CancelledError

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from obsbox import AsyncWorkerPool, WorkerPool
from obsbox.resilience import PoolFullError

from .conftest import Metrics, Spans

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def pool_value(sdk_metrics: Metrics, name: str, pool: str = "fulfilment") -> float | int:
    return sdk_metrics.value(name, **{"pool.name": pool})


def durations(sdk_metrics: Metrics) -> dict[str, int | None]:
    return {p.attributes["task.outcome"]: p.count for p in sdk_metrics.points("obsbox.pool.task.duration")}


def thread_pool(sdk_metrics: Metrics, spans: Spans, **kw: float | None) -> WorkerPool:
    return WorkerPool("fulfilment", meter_provider=sdk_metrics.provider, tracer_provider=spans.provider,
                      **kw)  # type: ignore[arg-type]


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# --- threads ---------------------------------------------------------------------------------------------------


def test_results_and_errors_reach_the_future(sdk_metrics: Metrics, spans: Spans) -> None:
    with thread_pool(sdk_metrics, spans, workers=2) as pool:
        assert pool.submit(pow, 2, 10).result(timeout=5) == 1024
        failed = pool.submit(int, "not a number")
        with pytest.raises(ValueError):
            failed.result(timeout=5)
    assert durations(sdk_metrics) == {"success": 1, "failure": 1}
    (bad,) = [s for s in spans.finished("fulfilment task") if s.status.status_code == StatusCode.ERROR]
    assert [e.name for e in bad.events] == ["exception"]


def test_task_span_is_a_child_of_the_submitters_span(sdk_metrics: Metrics, spans: Spans) -> None:
    seen: dict[str, object] = {}

    def ship(order: int) -> None:
        seen["span"] = trace.get_current_span().get_span_context()
        seen["request_id"] = request_id.get()
        seen["thread"] = threading.current_thread().name

    with thread_pool(sdk_metrics, spans) as pool:
        request_id.set("req-42")
        with spans.tracer.start_as_current_span("POST /orders") as parent:
            pool.submit(ship, 7).result(timeout=5)
        request_id.set("-")

    (task,) = spans.finished("fulfilment task")
    parent_ctx = parent.get_span_context()
    assert task.parent is not None and task.parent.span_id == parent_ctx.span_id
    assert task.context.trace_id == parent_ctx.trace_id
    assert seen["span"] == task.context  # the task's own code sees its span as current
    assert seen["request_id"] == "req-42"  # any contextvar flows, not only OpenTelemetry's
    assert str(seen["thread"]).startswith("fulfilment-worker-")
    attrs = dict(task.attributes or {})
    assert attrs["pool.name"] == "fulfilment" and attrs["code.function.name"].endswith("ship")
    assert isinstance(attrs["pool.queue_wait"], float) and attrs["pool.queue_wait"] >= 0


def test_without_a_submitter_span_the_task_starts_a_trace(sdk_metrics: Metrics, spans: Spans) -> None:
    with thread_pool(sdk_metrics, spans) as pool:
        pool.submit(lambda: None).result(timeout=5)
    (task,) = spans.finished("fulfilment task")
    assert task.parent is None


def test_full_queue_raises_and_metrics_move(sdk_metrics: Metrics, spans: Spans) -> None:
    release = threading.Event()
    pool = thread_pool(sdk_metrics, spans, workers=1, queue_size=2)
    try:
        running = pool.submit(release.wait, 5)
        wait_until(lambda: pool_value(sdk_metrics, "obsbox.pool.busy") == 1)
        queued = [pool.submit(release.wait, 5) for _ in range(2)]
        with pytest.raises(PoolFullError) as err:
            pool.submit(release.wait, 5)
        assert err.value.pool == "fulfilment" and err.value.queue_size == 2
        assert "fulfilment" in str(err.value) and "full" in str(err.value)
        assert pool_value(sdk_metrics, "obsbox.pool.queue.depth") == 2
        assert pool_value(sdk_metrics, "obsbox.pool.size") == 1
        release.set()
        for f in [running, *queued]:
            assert f.result(timeout=5) is True
        wait_until(lambda: pool_value(sdk_metrics, "obsbox.pool.busy") == 0)
        assert pool_value(sdk_metrics, "obsbox.pool.queue.depth") == 0
        assert durations(sdk_metrics) == {"success": 3}
    finally:
        release.set()
        pool.shutdown()
    assert pool_value(sdk_metrics, "obsbox.pool.size") == 0


def test_submit_timeout_waits_for_room(sdk_metrics: Metrics, spans: Spans) -> None:
    release = threading.Event()
    pool = thread_pool(sdk_metrics, spans, workers=1, queue_size=1, submit_timeout=0.05)
    try:
        pool.submit(release.wait, 5)
        wait_until(lambda: pool_value(sdk_metrics, "obsbox.pool.busy") == 1)
        pool.submit(release.wait, 5)
        started = time.monotonic()
        with pytest.raises(PoolFullError):
            pool.submit(release.wait, 5)
        assert time.monotonic() - started >= 0.04  # it did wait before giving up
    finally:
        release.set()
        pool.shutdown()


def test_blocking_submit_succeeds_when_room_appears(sdk_metrics: Metrics, spans: Spans) -> None:
    release = threading.Event()
    pool = thread_pool(sdk_metrics, spans, workers=1, queue_size=1, submit_timeout=None)
    try:
        pool.submit(release.wait, 5)
        pool.submit(release.wait, 5)
        threading.Timer(0.05, release.set).start()
        assert pool.submit(lambda: "late").result(timeout=5) == "late"
    finally:
        release.set()
        pool.shutdown()


def test_shutdown_runs_queued_tasks_then_refuses(sdk_metrics: Metrics, spans: Spans) -> None:
    pool = thread_pool(sdk_metrics, spans, workers=1, queue_size=10)
    done: list[int] = []
    for i in range(5):
        pool.submit(lambda i=i: (time.sleep(0.005), done.append(i)))
    pool.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)


def test_shutdown_can_cancel_pending(sdk_metrics: Metrics, spans: Spans) -> None:
    release = threading.Event()
    pool = thread_pool(sdk_metrics, spans, workers=1, queue_size=10)
    first = pool.submit(release.wait, 5)
    wait_until(lambda: pool_value(sdk_metrics, "obsbox.pool.busy") == 1)
    pending = [pool.submit(lambda: None) for _ in range(3)]
    pool.shutdown(wait=False, cancel_pending=True)
    release.set()
    assert first.result(timeout=5) is True
    for f in pending:
        with pytest.raises(CancelledError):
            f.result(timeout=5)
    assert pool_value(sdk_metrics, "obsbox.pool.queue.depth") == 0


def test_many_submitters(sdk_metrics: Metrics, spans: Spans) -> None:
    with thread_pool(sdk_metrics, spans, workers=4, queue_size=1000) as pool:
        futures = []
        lock = threading.Lock()

        def submitter(n: int) -> None:
            for i in range(100):
                f = pool.submit(lambda a, b: a * b, n, i)
                with lock:
                    futures.append((n * i, f))

        threads = [threading.Thread(target=submitter, args=(n,)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(f.result(timeout=10) == expected for expected, f in futures)
    assert durations(sdk_metrics) == {"success": 500}
    assert pool_value(sdk_metrics, "obsbox.pool.busy") == 0
    assert pool_value(sdk_metrics, "obsbox.pool.queue.depth") == 0


def test_bad_settings_are_refused() -> None:
    for kw in (dict(workers=0), dict(queue_size=0), dict(submit_timeout=-1)):
        with pytest.raises(ValueError):
            WorkerPool("x", **kw)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            AsyncWorkerPool("x", **kw)  # type: ignore[arg-type]


# --- asyncio ---------------------------------------------------------------------------------------------------


def async_pool(sdk_metrics: Metrics, spans: Spans, **kw: float | None) -> AsyncWorkerPool:
    return AsyncWorkerPool("fulfilment", meter_provider=sdk_metrics.provider, tracer_provider=spans.provider,
                           **kw)  # type: ignore[arg-type]


def test_async_context_flows_into_the_task(sdk_metrics: Metrics, spans: Spans) -> None:
    seen: dict[str, object] = {}

    async def ship(order: int) -> int:
        await asyncio.sleep(0)
        seen["span"] = trace.get_current_span().get_span_context()
        seen["request_id"] = request_id.get()
        return order * 2

    async def scenario() -> trace.Span:
        pool = async_pool(sdk_metrics, spans)
        request_id.set("req-7")
        with spans.tracer.start_as_current_span("POST /orders") as parent:
            future = await pool.submit(ship, 21)
        request_id.set("-")
        assert await future == 42
        await pool.close()
        return parent

    parent = asyncio.run(scenario())
    (task,) = spans.finished("fulfilment task")
    assert task.parent is not None and task.parent.span_id == parent.get_span_context().span_id
    assert task.context.trace_id == parent.get_span_context().trace_id
    assert seen == {"span": task.context, "request_id": "req-7"}


def test_async_full_queue_and_metrics(sdk_metrics: Metrics, spans: Spans) -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        pool = async_pool(sdk_metrics, spans, workers=1, queue_size=2)
        running = await pool.submit(release.wait)
        await asyncio.sleep(0.01)
        assert pool_value(sdk_metrics, "obsbox.pool.busy") == 1
        queued = [await pool.submit(release.wait) for _ in range(2)]
        with pytest.raises(PoolFullError):
            await pool.submit(release.wait)
        assert pool_value(sdk_metrics, "obsbox.pool.queue.depth") == 2
        assert pool_value(sdk_metrics, "obsbox.pool.size") == 1

        async def broken() -> None:
            raise ValueError("no stock")

        release.set()
        await asyncio.gather(running, *queued)
        failing = await pool.submit(broken)
        with pytest.raises(ValueError):
            await failing
        await pool.close()
        assert pool_value(sdk_metrics, "obsbox.pool.busy") == 0
        assert pool_value(sdk_metrics, "obsbox.pool.queue.depth") == 0
        assert pool_value(sdk_metrics, "obsbox.pool.size") == 0
        with pytest.raises(RuntimeError, match="closed"):
            await pool.submit(release.wait)

    asyncio.run(scenario())
    assert durations(sdk_metrics) == {"success": 3, "failure": 1}


def test_async_blocking_submit_and_timeout(sdk_metrics: Metrics, spans: Spans) -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        pool = async_pool(sdk_metrics, spans, workers=1, queue_size=1, submit_timeout=0.05)
        await pool.submit(release.wait)
        await asyncio.sleep(0.01)
        await pool.submit(release.wait)
        with pytest.raises(PoolFullError):
            await pool.submit(release.wait)
        asyncio.get_running_loop().call_later(0.02, release.set)
        pool.submit_timeout = None
        late = await pool.submit(asyncio.sleep, 0, "late")
        assert await late == "late"
        await pool.close()

    asyncio.run(scenario())


def test_async_task_cancelling_itself_does_not_kill_the_worker(sdk_metrics: Metrics, spans: Spans) -> None:
    async def scenario() -> None:
        pool = async_pool(sdk_metrics, spans, workers=1)

        async def cancels_itself() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(1)

        first = await pool.submit(cancels_itself)
        with pytest.raises(asyncio.CancelledError):
            await first
        second = await pool.submit(asyncio.sleep, 0, "still working")
        assert await asyncio.wait_for(second, 5) == "still working"
        await pool.close()

    asyncio.run(scenario())


def test_async_close_without_wait_cancels_pending(sdk_metrics: Metrics, spans: Spans) -> None:
    async def scenario() -> None:
        pool = async_pool(sdk_metrics, spans, workers=1, queue_size=5)
        blocker = await pool.submit(asyncio.sleep, 10)
        await asyncio.sleep(0.01)
        pending = [await pool.submit(asyncio.sleep, 0) for _ in range(3)]
        await pool.close(wait=False)
        assert blocker.cancelled() and all(p.cancelled() for p in pending)
        assert pool_value(sdk_metrics, "obsbox.pool.queue.depth") == 0
        assert pool_value(sdk_metrics, "obsbox.pool.busy") == 0

    asyncio.run(scenario())


class BrokenTracerProvider:
    """A tracer provider whose spans cannot even be started."""

    def get_tracer(self, *args: object, **kwargs: object) -> object:
        class Tracer:
            def start_span(self, *a: object, **k: object) -> object:
                raise RuntimeError("tracer down")

        return Tracer()


def test_tasks_run_even_when_the_tracer_is_broken(sdk_metrics: Metrics) -> None:
    with WorkerPool("broken-tracer", meter_provider=sdk_metrics.provider,
                    tracer_provider=BrokenTracerProvider()) as pool:  # type: ignore[arg-type]
        assert pool.submit(lambda: "ran").result(timeout=5) == "ran"
        with pytest.raises(ValueError):
            pool.submit(int, "x").result(timeout=5)

    async def scenario() -> str:
        apool = AsyncWorkerPool("broken-tracer-async", meter_provider=sdk_metrics.provider,
                                tracer_provider=BrokenTracerProvider())  # type: ignore[arg-type]
        future = await apool.submit(asyncio.sleep, 0, "ran too")
        result = await future
        await apool.close()
        return result

    assert asyncio.run(scenario()) == "ran too"
