"""Retry: backoff bounds and jitter, who gets retried, exhaustion, deadline, sync and async, and what is reported."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from obsbox import Retry, RetryExhaustedError

from .conftest import FakeClock, Metrics, Spans


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def failing(times: int, error: Callable[[], Exception] = Flaky) -> Callable[[], str]:
    """A function failing `times` times, then returning "ok"; counts its calls in .calls."""
    state = {"calls": 0}

    def fn() -> str:
        state["calls"] += 1
        if state["calls"] <= times:
            raise error()
        return "ok"

    fn.calls = state  # type: ignore[attr-defined]
    return fn


class Sleeps:
    """Records the sleeps and moves the fake clock by them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self(seconds)


def make(clock: FakeClock, sdk_metrics: Metrics, sleeps: Sleeps, **kw: object) -> Retry:
    params: dict[str, object] = dict(attempts=4, initial_backoff=0.1, max_backoff=1.0, multiplier=2.0,
                                     retry_on=(Flaky,))
    params.update(kw)
    return Retry("inventory", clock=clock, sleep=sleeps, async_sleep=sleeps.async_sleep,
                 meter_provider=sdk_metrics.provider, **params)  # type: ignore[arg-type]


def outcomes(sdk_metrics: Metrics) -> dict[str, float | int | None]:
    """The outcomes counted so far (every outcome is reported from the start, at 0: see the test below)."""
    return {p.attributes["retry.outcome"]: p.value for p in sdk_metrics.points("obsbox.retry.calls") if p.value}


def test_every_outcome_is_reported_from_the_start(sdk_metrics: Metrics) -> None:
    Retry("fresh", meter_provider=sdk_metrics.provider)
    points = sdk_metrics.points("obsbox.retry.calls")
    assert {p.attributes["retry.outcome"]: p.value for p in points} == {
        "success_first_try": 0, "success_after_retry": 0, "exhausted": 0, "non_retryable": 0}
    assert all(p.monotonic is True and p.unit == "{call}" for p in points)
    assert [p.value for p in sdk_metrics.points("obsbox.retry.retries")] == [0]


def test_backoff_cap_grows_exponentially_to_the_max() -> None:
    r = Retry("x", initial_backoff=0.1, multiplier=3.0, max_backoff=2.0)
    assert [r.backoff_cap(n) for n in range(1, 6)] == pytest.approx([0.1, 0.3, 0.9, 2.0, 2.0])
    assert r.backoff_cap(10_000) == 2.0  # no overflow for absurd attempt counts


def test_full_jitter_stays_within_bounds_and_spreads() -> None:
    rng = random.Random(7)
    r = Retry("x", initial_backoff=0.1, multiplier=2.0, max_backoff=1.0, random=rng.random)
    for n in (1, 2, 3, 4, 5):
        samples = [r.backoff(n) for _ in range(2000)]
        cap = r.backoff_cap(n)
        assert all(0.0 <= s <= cap for s in samples)
        # uniform on [0, cap]: the mean is near cap/2 and both halves are used
        assert sum(samples) / len(samples) == pytest.approx(cap / 2, rel=0.1)
        assert min(samples) < cap * 0.1 and max(samples) > cap * 0.9


def test_no_jitter_sleeps_the_cap(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, jitter=False)
    assert r.call(failing(3)) == "ok"
    assert sleeps.slept == pytest.approx([0.1, 0.2, 0.4])


def test_success_first_try_does_not_sleep(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps)
    assert r.call(failing(0)) == "ok"
    assert sleeps.slept == []
    assert outcomes(sdk_metrics) == {"success_first_try": 1}
    assert [p.value for p in sdk_metrics.points("obsbox.retry.retries")] == [0]


def test_success_after_retry_is_counted_with_backoff(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, random=lambda: 0.5)
    fn = failing(2)
    assert r.call(fn) == "ok"
    assert fn.calls["calls"] == 3  # type: ignore[attr-defined]
    assert sleeps.slept == pytest.approx([0.05, 0.1])
    assert outcomes(sdk_metrics) == {"success_after_retry": 1}
    assert sdk_metrics.value("obsbox.retry.retries", **{"retry.name": "inventory"}) == 2
    (backoff,) = sdk_metrics.points("obsbox.retry.backoff")
    assert backoff.unit == "s" and backoff.count == 2 and backoff.sum == pytest.approx(0.15)
    assert backoff.attributes == {"retry.name": "inventory"}
    # 0.05 and 0.1 land in the buckets (0.025, 0.05] and (0.075, 0.1] of the seconds boundaries
    assert sum(backoff.bucket_counts) == 2 and max(backoff.bucket_counts) == 1


def test_non_retryable_error_is_raised_at_once(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps)
    fn = failing(5, Fatal)
    with pytest.raises(Fatal):
        r.call(fn)
    assert fn.calls["calls"] == 1  # type: ignore[attr-defined]
    assert sleeps.slept == []
    assert outcomes(sdk_metrics) == {"non_retryable": 1}


def test_predicate_decides(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, retry_on=lambda exc: isinstance(exc, Fatal) and "again" in str(exc))
    fn = failing(1, lambda: Fatal("try again"))
    assert r.call(fn) == "ok"
    with pytest.raises(Fatal):
        r.call(failing(1, lambda: Fatal("give up")))
    assert outcomes(sdk_metrics) == {"success_after_retry": 1, "non_retryable": 1}


def test_exhausted_raises_from_the_last_error(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps)
    fn = failing(10)
    with pytest.raises(RetryExhaustedError) as err:
        r.call(fn)
    assert fn.calls["calls"] == 4  # type: ignore[attr-defined]
    assert len(sleeps.slept) == 3
    assert isinstance(err.value.__cause__, Flaky) and err.value.last_error is err.value.__cause__
    assert err.value.attempts == 4 and err.value.retry == "inventory"
    assert "gave up after 4 attempts" in str(err.value)
    assert outcomes(sdk_metrics) == {"exhausted": 1}
    assert sdk_metrics.value("obsbox.retry.retries") == 3


def test_deadline_stops_before_sleeping_past_it(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, attempts=10, jitter=False, deadline=0.5)
    fn = failing(10)
    with pytest.raises(RetryExhaustedError) as err:
        r.call(fn)
    # sleeps 0.1, 0.2 (total 0.3); the next 0.4 would end at 0.7 > 0.5
    assert sleeps.slept == pytest.approx([0.1, 0.2])
    assert err.value.attempts == 3
    assert outcomes(sdk_metrics) == {"exhausted": 1}


def test_deadline_counts_time_spent_in_attempts(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, attempts=10, jitter=False, deadline=1.0)

    def slow_failure() -> None:
        clock.advance(0.45)
        raise Flaky()

    with pytest.raises(RetryExhaustedError) as err:
        r.call(slow_failure)
    assert err.value.attempts == 2  # 0.45 + 0.1 + 0.45 = 1.0; another 0.2 sleep would pass the deadline


def test_span_event_per_retry(clock: FakeClock, sdk_metrics: Metrics, spans: Spans) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, jitter=False)
    with spans.tracer.start_as_current_span("reserve"):
        r.call(failing(2))
    (span,) = spans.finished("reserve")
    events = [dict(e.attributes or {}) for e in span.events if e.name == "retry"]
    assert [(e["retry.attempt"], e["retry.delay"]) for e in events] == [(2, 0.1), (3, pytest.approx(0.2))]
    assert all(e["retry.name"] == "inventory" for e in events)
    assert all(e["exception.type"] == f"{__name__}.Flaky" for e in events)


def test_async_retries_with_async_sleep(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, jitter=False)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls < 3:
            raise Flaky()
        return "ok"

    @r
    async def always_fails() -> None:
        raise Flaky()

    assert asyncio.run(r.call_async(flaky)) == "ok"
    with pytest.raises(RetryExhaustedError):
        asyncio.run(always_fails())
    assert sleeps.slept == pytest.approx([0.1, 0.2, 0.1, 0.2, 0.4])
    assert outcomes(sdk_metrics) == {"success_after_retry": 1, "exhausted": 1}


def test_async_with_real_sleep_is_short() -> None:
    r = Retry("real", attempts=3, initial_backoff=0.001, max_backoff=0.002)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError()
        return "ok"

    assert asyncio.run(r.call_async(flaky)) == "ok"


def test_cancellation_is_not_retried(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps, retry_on=Exception)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        r.call(interrupted)
    assert sleeps.slept == [] and outcomes(sdk_metrics) == {}


def test_sync_decorator(clock: FakeClock, sdk_metrics: Metrics) -> None:
    sleeps = Sleeps(clock)
    r = make(clock, sdk_metrics, sleeps)
    fn = failing(1)

    @r
    def wrapped() -> str:
        """Docs."""
        return fn()

    assert wrapped() == "ok" and wrapped.__doc__ == "Docs."


@pytest.mark.parametrize(
    "kw", [dict(attempts=0), dict(initial_backoff=-1), dict(multiplier=0.5), dict(deadline=0)]
)
def test_bad_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Retry("x", **kw)  # type: ignore[arg-type]
