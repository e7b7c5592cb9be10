"""Pools and breakers survive what servers do to them: a fork after start (pre-fork servers), a new event loop."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from obsbox import AsyncWorkerPool, CircuitBreaker, WorkerPool

from .conftest import Metrics

needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                                reason="os.fork is POSIX; macOS forbids fork after threads in many setups")


def in_child(body: str, env: dict[str, object]) -> str:
    """Fork; the child runs `body` (Python source using the names in env, setting `result`) and reports it."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            import signal

            signal.alarm(10)  # a deadlock must not hang the suite
            scope: dict[str, object] = dict(env)
            exec(body, scope)
            os.write(write_fd, str(scope["result"]).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write_fd, f"error: {exc!r}".encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child died: {status}"
    return out


@needs_fork
def test_thread_pool_works_in_a_forked_child(sdk_metrics: Metrics) -> None:
    pool = WorkerPool("forked", workers=2, meter_provider=sdk_metrics.provider)
    try:
        assert pool.submit(lambda: "parent").result(timeout=5) == "parent"  # threads started before the fork
        out = in_child("result = pool.submit(lambda: 'child').result(timeout=5)", {"pool": pool})
        assert out == "child"
        assert pool.submit(lambda: "parent again").result(timeout=5) == "parent again"
    finally:
        pool.shutdown()


@needs_fork
def test_breaker_lock_held_at_fork_time_does_not_deadlock_the_child(sdk_metrics: Metrics) -> None:
    breaker = CircuitBreaker("forked", meter_provider=sdk_metrics.provider)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with breaker._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        out = in_child("result = breaker.call(lambda: 'called')", {"breaker": breaker})
        assert out == "called"
    finally:
        release.set()
        holder.join()


def test_async_pool_moves_to_a_new_loop_when_the_old_one_is_gone(sdk_metrics: Metrics) -> None:
    pool = AsyncWorkerPool("loops", workers=1, meter_provider=sdk_metrics.provider)

    async def once(value: str) -> str:
        future = await pool.submit(asyncio.sleep, 0, value)
        return await future

    async def leave_work_behind() -> None:
        await pool.submit(asyncio.sleep, 30)  # still running when the loop ends
        await pool.submit(asyncio.sleep, 30)  # still queued
        await asyncio.sleep(0.01)

    assert asyncio.run(once("first loop")) == "first loop"
    asyncio.run(leave_work_behind())
    assert asyncio.run(once("second loop")) == "second loop"
    # what the dead loop left counted as busy or queued has been taken back
    assert sdk_metrics.value("obsbox.pool.busy", **{"pool.name": "loops"}) == 0
    assert sdk_metrics.value("obsbox.pool.queue.depth", **{"pool.name": "loops"}) == 0


def test_async_pool_refuses_a_second_running_loop(sdk_metrics: Metrics) -> None:
    pool = AsyncWorkerPool("two-loops", meter_provider=sdk_metrics.provider)
    started, done = threading.Event(), threading.Event()

    async def first() -> None:
        await pool.submit(asyncio.sleep, 0)
        started.set()
        while not done.is_set():
            await asyncio.sleep(0.005)
        await pool.close()

    thread = threading.Thread(target=asyncio.run, args=(first(),))
    thread.start()
    try:
        assert started.wait(5)

        async def second() -> None:
            with pytest.raises(RuntimeError, match="another event loop"):
                await pool.submit(asyncio.sleep, 0)

        asyncio.run(second())
    finally:
        done.set()
        thread.join()
