"""The same state machine from asyncio: call_async, async decorators, concurrent trials and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from obsbox import CircuitBreaker, CircuitOpenError

from .conftest import FakeClock, Metrics


class Boom(Exception):
    pass


async def fail() -> None:
    await asyncio.sleep(0)
    raise Boom()


async def ok() -> str:
    await asyncio.sleep(0)
    return "ok"


def make(clock: FakeClock, sdk_metrics: Metrics, **kw: int) -> CircuitBreaker:
    return CircuitBreaker("inventory", failure_ratio=0.5, minimum_calls=4, window=10.0, reset_timeout=5.0,
                          clock=clock, meter_provider=sdk_metrics.provider, **kw)


async def trip(breaker: CircuitBreaker) -> None:
    for _ in range(4):
        with pytest.raises(Boom):
            await breaker.call_async(fail)


def test_open_reject_half_open_close(clock: FakeClock, sdk_metrics: Metrics) -> None:
    async def scenario() -> None:
        breaker = make(clock, sdk_metrics)
        await trip(breaker)
        assert breaker.state == "open"
        calls = 0

        async def counted() -> str:
            nonlocal calls
            calls += 1
            return "ok"

        with pytest.raises(CircuitOpenError):
            await breaker.call_async(counted)
        assert calls == 0
        clock.advance(5.0)
        assert await breaker.call_async(counted) == "ok"
        assert calls == 1 and breaker.state == "closed"

    asyncio.run(scenario())
    calls = {p.attributes["breaker.outcome"]: p.value for p in sdk_metrics.points("obsbox.circuit_breaker.calls")}
    assert calls == {"failure": 4, "rejected": 1, "success": 1}


def test_concurrent_trials_are_limited(clock: FakeClock, sdk_metrics: Metrics) -> None:
    async def scenario() -> list[object]:
        breaker = make(clock, sdk_metrics, half_open_max_calls=2)
        await trip(breaker)
        clock.advance(5.0)
        release = asyncio.Event()

        async def slow_trial() -> str:
            await release.wait()
            return "ok"

        tasks = [asyncio.create_task(breaker.call_async(slow_trial)) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert breaker.state == "half_open"
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert breaker.state == "closed"
        return results

    results = asyncio.run(scenario())
    assert results.count("ok") == 2
    rejected = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(rejected) == 3 and all(r.state == "half_open" and r.retry_after == 0 for r in rejected)


def test_cancelled_trial_frees_its_slot(clock: FakeClock, sdk_metrics: Metrics) -> None:
    async def scenario() -> None:
        breaker = make(clock, sdk_metrics)
        await trip(breaker)
        clock.advance(5.0)
        task = asyncio.create_task(breaker.call_async(asyncio.sleep, 60))
        await asyncio.sleep(0.01)
        with pytest.raises(CircuitOpenError):  # the single trial slot is taken
            await breaker.call_async(ok)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state == "half_open"
        assert await breaker.call_async(ok) == "ok"  # the slot is free again
        assert breaker.state == "closed"

    asyncio.run(scenario())


def test_async_decorator(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)

    @breaker
    async def reserve(sku: str) -> str:
        await asyncio.sleep(0)
        return sku

    @breaker
    async def broken() -> None:
        raise Boom()

    async def scenario() -> None:
        assert await reserve("sku-1") == "sku-1"
        for _ in range(3):  # 3 of 4 calls failed
            with pytest.raises(Boom):
                await broken()
        with pytest.raises(CircuitOpenError):
            await reserve("sku-2")

    asyncio.run(scenario())
    assert asyncio.iscoroutinefunction(reserve)
