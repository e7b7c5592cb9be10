"""Worker pools — threads (`WorkerPool`) and asyncio tasks (`AsyncWorkerPool`) — that carry the submitter's trace
context into each task and report their size, load and task durations.

>>> from obsbox import WorkerPool
>>> with WorkerPool("fulfilment", workers=2, queue_size=10) as pool:
...     future = pool.submit(sum, [1, 2, 3])
...     future.result()
6

In async code:

>>> from obsbox import AsyncWorkerPool
>>> async def main() -> None:                                       # doctest: +SKIP
...     pool = AsyncWorkerPool("fulfilment", workers=4, queue_size=100)
...     future = await pool.submit(ship, order_id)                  # queued; returns an asyncio.Future
...     await future                                                # the task's result (or its error)
...     await pool.close()

Trace context: `submit` captures the submitter's context (`contextvars`, which holds the OpenTelemetry context and
loguru's `contextualize` data), and the task runs inside it, in a span named "<pool name> task" that is a CHILD of
the span current at submit time. A child (not a link) keeps the work on the request's trace, so a trace view shows
what the request queued and how long it waited; the span may end after its parent when the submitter does not wait.
Span attributes: pool.name, code.function.name, pool.queue_wait (seconds between submit and start).

Full queue: `submit` never blocks by default — when `queue_size` tasks are already waiting it raises `PoolFullError`
at once, so a saturated pool sheds load visibly instead of stalling request handlers. Pass
`submit_timeout=SECONDS` to wait up to that long for room (then PoolFullError), or `submit_timeout=None` to wait
indefinitely.

Telemetry (names from obsbox.instrumentation.catalogue, attribute pool.name): `obsbox.pool.size` (workers; 0 after
shutdown), `obsbox.pool.busy` (workers running a task), `obsbox.pool.queue.depth` (tasks waiting),
`obsbox.pool.task.duration` by task.outcome (success, failure).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any, Generic, ParamSpec, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from obsbox.resilience._telemetry import PoolTelemetry

__all__ = ["AsyncWorkerPool", "PoolFullError", "WorkerPool"]

P = ParamSpec("P")
T = TypeVar("T")


class PoolFullError(RuntimeError):
    """The pool's queue is full (after waiting `submit_timeout`, if one was given): the task was not queued."""

    def __init__(self, pool: str, queue_size: int) -> None:
        self.pool = pool
        self.queue_size = queue_size
        super().__init__(f"worker pool {pool!r} is full: {queue_size} tasks are already waiting")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.pool, self.queue_size))


class _Pool:
    """What both pools share: their settings, the closed flag and the telemetry."""

    def __init__(
        self,
        name: str,
        workers: int,
        queue_size: int,
        submit_timeout: float | None,
        meter_provider: metrics.MeterProvider | None,
        tracer_provider: trace.TracerProvider | None,
    ) -> None:
        if not name:
            raise ValueError("a worker pool needs a name")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if submit_timeout is not None and submit_timeout < 0:
            raise ValueError(f"submit_timeout must be >= 0 seconds or None, got {submit_timeout}")
        self.name = name
        self.workers = workers
        self.queue_size = queue_size
        self.submit_timeout = submit_timeout
        self._closed = False
        self._telemetry = PoolTelemetry(name, lambda: 0 if self._closed else self.workers, meter_provider,
                                        tracer_provider)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, workers={self.workers}, queue_size={self.queue_size})"


def _function_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


@dataclass
class _Task(Generic[T]):
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    context: contextvars.Context
    submitted: float = field(default_factory=time.perf_counter)


def _start_span(telemetry: PoolTelemetry, task: _Task[Any]) -> trace.Span:
    # Runs inside the submitter's copied context, so the current span there becomes the parent.
    try:
        return telemetry.tracer.start_span(
            telemetry.span_name,
            kind=SpanKind.INTERNAL,
            attributes={
                "pool.name": telemetry.name,
                "code.function.name": _function_name(task.fn),
                "pool.queue_wait": max(0.0, time.perf_counter() - task.submitted),
            },
        )
    except Exception:  # noqa: BLE001 - a broken tracer must not stop the task: it runs unrecorded
        return trace.INVALID_SPAN


def _fail_span(span: trace.Span, exc: BaseException) -> None:
    try:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    except Exception:  # noqa: BLE001 - the task's own error is what the future must carry
        pass


class WorkerPool(_Pool):
    """A fixed set of worker threads fed by a bounded queue (see the module docs).

    Threads start on the first `submit` (so a pool created at import time survives a pre-fork server) and are
    daemons: call `shutdown()` (or use the pool as a context manager) to let queued tasks finish.
    """

    def __init__(
        self,
        name: str,
        *,
        workers: int = 4,
        queue_size: int = 100,
        submit_timeout: float | None = 0.0,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        super().__init__(name, workers, queue_size, submit_timeout, meter_provider, tracer_provider)
        # Room in the queue is a semaphore so the queue itself can always take the shutdown sentinels.
        self._room = threading.Semaphore(queue_size)
        self._queue: SimpleQueue[tuple[_Task[Any], Future[Any]] | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        _thread_pools.add(self)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `fn(*args, **kwargs)`; returns its Future. Raises PoolFullError when the queue stays full."""
        if self._closed:
            raise RuntimeError(f"worker pool {self.name!r} is shut down")
        if self.submit_timeout == 0:
            acquired = self._room.acquire(blocking=False)
        else:
            acquired = self._room.acquire(timeout=self.submit_timeout)
        if not acquired:
            raise PoolFullError(self.name, self.queue_size)
        future: Future[T] = Future()
        task: _Task[T] = _Task(fn, args, dict(kwargs), contextvars.copy_context())
        with self._lock:
            if self._closed:
                self._room.release()
                raise RuntimeError(f"worker pool {self.name!r} is shut down")
            if not self._threads:
                self._start_workers()
            self._telemetry.queued(1)
            self._queue.put((task, future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stop taking tasks; queued tasks still run unless `cancel_pending`; `wait` joins the workers."""
        with self._lock:
            already = self._closed
            self._closed = True
            if cancel_pending:
                self._cancel_queued()
            if not already:
                for _ in self._threads:
                    self._queue.put(None)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _cancel_queued(self) -> None:
        kept: list[tuple[_Task[Any], Future[Any]] | None] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except Empty:
                break
            if item is None:
                kept.append(item)
                continue
            item[1].cancel()
            self._room.release()
            self._telemetry.queued(-1)
        for sentinel in kept:
            self._queue.put(sentinel)

    def _after_fork_in_child(self) -> None:
        # The parent's worker threads do not exist here and its queued tasks are the parent's to run: start
        # afresh (threads again on the next submit).
        self._lock = threading.Lock()
        self._room = threading.Semaphore(self.queue_size)
        self._queue = SimpleQueue()
        self._threads = []
        self._telemetry.after_fork()

    def _start_workers(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            task, future = item
            self._room.release()
            self._telemetry.queued(-1)
            if not future.set_running_or_notify_cancel():
                continue
            self._telemetry.busy(1)
            try:
                task.context.run(self._run, task, future)
            finally:
                self._telemetry.busy(-1)

    def _run(self, task: _Task[Any], future: Future[Any]) -> None:
        span = _start_span(self._telemetry, task)
        started = time.perf_counter()
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                result = task.fn(*task.args, **task.kwargs)
            except BaseException as exc:  # the error belongs to the future, never to the worker thread
                self._telemetry.task(time.perf_counter() - started, "failure")
                _fail_span(span, exc)
                future.set_exception(exc)
                return
            self._telemetry.task(time.perf_counter() - started, "success")
            future.set_result(result)


class AsyncWorkerPool(_Pool):
    """A fixed set of asyncio worker tasks fed by a bounded asyncio.Queue (see the module docs).

    Workers start on the first `submit`, on the running event loop; use the pool from that loop only.
    `await submit(...)` returns an asyncio.Future for the task's result once the task is queued.
    """

    def __init__(
        self,
        name: str,
        *,
        workers: int = 4,
        queue_size: int = 100,
        submit_timeout: float | None = 0.0,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        super().__init__(name, workers, queue_size, submit_timeout, meter_provider, tracer_provider)
        self._queue: asyncio.Queue[tuple[_Task[Any], asyncio.Future[Any]]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> AsyncWorkerPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(
        self, coro_fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> asyncio.Future[T]:
        """Queue `await coro_fn(*args, **kwargs)`; returns a Future of its result. Raises PoolFullError when full."""
        if self._closed:
            raise RuntimeError(f"worker pool {self.name!r} is closed")
        queue = self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        future.add_done_callback(_mark_retrieved)
        item = (_Task[T](coro_fn, args, dict(kwargs), contextvars.copy_context()), future)
        self._telemetry.queued(1)
        try:
            if self.submit_timeout == 0:
                queue.put_nowait(item)
            elif self.submit_timeout is None:
                await queue.put(item)
            else:
                await asyncio.wait_for(queue.put(item), self.submit_timeout)
        except (asyncio.QueueFull, asyncio.TimeoutError):
            self._telemetry.queued(-1)
            raise PoolFullError(self.name, self.queue_size) from None
        except BaseException:
            self._telemetry.queued(-1)
            raise
        return future

    async def close(self, wait: bool = True) -> None:
        """Stop taking tasks; with `wait`, let queued tasks finish first; then stop the workers."""
        self._closed = True
        queue = self._queue
        if queue is None:
            return
        if wait:
            await queue.join()
        else:
            while not queue.empty():
                _, future = queue.get_nowait()
                future.cancel()
                queue.task_done()
                self._telemetry.queued(-1)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    def _ensure_started(self) -> asyncio.Queue[tuple[_Task[Any], asyncio.Future[Any]]]:
        loop = asyncio.get_running_loop()
        if self._queue is not None and self._loop is not loop:
            old = self._loop
            if old is not None and old.is_running():
                raise RuntimeError(
                    f"worker pool {self.name!r} already runs on another event loop; create one pool per loop"
                )
            # The loop the workers ran on has stopped (a test client, asyncio.run): they and their queue died
            # with it. Start over on this loop.
            self._queue = None
            self._workers = []
            self._telemetry.zero()
        if self._queue is None:
            self._queue = asyncio.Queue(self.queue_size)
            self._loop = loop
            self._workers = [
                loop.create_task(self._work(), name=f"{self.name}-worker-{i}") for i in range(self.workers)
            ]
        return self._queue

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        while True:
            task, future = await queue.get()
            self._telemetry.queued(-1)
            try:
                if future.cancelled():
                    continue
                self._telemetry.busy(1)
                try:
                    # create_task copies the current context: inside run() that is the submitter's context.
                    running = task.context.run(loop.create_task, self._run(task, future))
                    try:
                        # wait() rather than await: a task that cancels itself must not end the worker.
                        await asyncio.wait([running])
                    except asyncio.CancelledError:
                        running.cancel()
                        raise
                finally:
                    self._telemetry.busy(-1)
            finally:
                queue.task_done()

    async def _run(self, task: _Task[Any], future: asyncio.Future[Any]) -> None:
        span = _start_span(self._telemetry, task)
        started = time.perf_counter()
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                result = await task.fn(*task.args, **task.kwargs)
            except asyncio.CancelledError:
                span.set_attribute("pool.task.cancelled", True)
                if not future.done():
                    future.cancel()
                raise
            except Exception as exc:
                self._telemetry.task(time.perf_counter() - started, "failure")
                _fail_span(span, exc)
                if not future.done():
                    future.set_exception(exc)
                return
            self._telemetry.task(time.perf_counter() - started, "success")
            if not future.done():
                future.set_result(result)


_thread_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_thread_pools):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    # A fire-and-forget task's error is already on its span and in the metrics; without this asyncio would also
    # log "Future exception was never retrieved" when the future is collected.
    if not future.cancelled():
        future.exception()
