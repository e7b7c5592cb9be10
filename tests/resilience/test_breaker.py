"""The circuit breaker's state machine, driven by a fake clock, and what it reports on a real SDK pipeline."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from obsbox import CircuitBreaker, CircuitOpenError
from obsbox.resilience.breaker import BreakerState

from .conftest import FakeClock, Metrics, Spans


class Boom(Exception):
    pass


class NotFound(Exception):
    pass


def fail() -> None:
    raise Boom("dependency down")


def ok() -> str:
    return "ok"


def make(clock: FakeClock, sdk_metrics: Metrics, **kw: object) -> CircuitBreaker:
    params: dict[str, object] = dict(failure_ratio=0.5, minimum_calls=4, window=10.0, reset_timeout=30.0)
    params.update(kw)
    return CircuitBreaker("payments", clock=clock, meter_provider=sdk_metrics.provider, **params)  # type: ignore[arg-type]


def run(breaker: CircuitBreaker, outcomes: str) -> None:
    """Call through the breaker once per letter: s = success, f = failure."""
    for letter in outcomes:
        if letter == "s":
            assert breaker.call(ok) == "ok"
        else:
            with pytest.raises(Boom):
                breaker.call(fail)


def test_stays_closed_until_minimum_calls_even_if_all_fail(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)
    run(breaker, "fff")
    assert breaker.state == "closed"
    run(breaker, "f")
    assert breaker.state == "open"


def test_opens_when_ratio_reached_with_minimum_calls(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics, minimum_calls=6)
    run(breaker, "sssff")  # 2 of 5: below the minimum anyway
    assert breaker.state == "closed"
    run(breaker, "s")  # 2 of 6 = 0.33 < 0.5
    assert breaker.state == "closed"
    run(breaker, "f")  # 3 of 7 = 0.43
    assert breaker.state == "closed"
    run(breaker, "f")  # 4 of 8 = 0.5: reaches the ratio
    assert breaker.state == "open"


def test_failures_leave_the_window(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)
    run(breaker, "fff")
    clock.advance(10.0)  # a full window later the old failures are gone
    run(breaker, "fss")
    assert breaker.state == "closed"
    run(breaker, "f")  # 2 of 4 in the window now
    assert breaker.state == "open"


def test_open_rejects_without_calling(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)
    run(breaker, "ffff")
    clock.advance(12.0)
    called = []
    with pytest.raises(CircuitOpenError) as err:
        breaker.call(called.append, 1)
    assert called == []
    assert err.value.breaker == "payments"
    assert err.value.retry_after == pytest.approx(18.0)
    assert "payments" in str(err.value) and "18.0s" in str(err.value)
    assert sdk_metrics.value("obsbox.circuit_breaker.calls", **{"breaker.outcome": "rejected"}) == 1


def test_half_open_after_reset_timeout_then_closes_on_success(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)
    run(breaker, "ffff")
    clock.advance(29.9)
    assert breaker.state == "open"
    clock.advance(0.1)
    assert breaker.state == "half_open"
    run(breaker, "s")
    assert breaker.state == "closed"
    run(breaker, "fff")  # a fresh window: the old failures do not count
    assert breaker.state == "closed"


def test_failed_trial_reopens_for_another_timeout(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)
    run(breaker, "ffff")
    clock.advance(30.0)
    run(breaker, "f")
    assert breaker.state == "open"
    clock.advance(29.0)
    with pytest.raises(CircuitOpenError) as err:
        breaker.call(ok)
    assert err.value.retry_after == pytest.approx(1.0)


def test_half_open_admits_at_most_max_trial_calls(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics, half_open_max_calls=2)
    run(breaker, "ffff")
    clock.advance(30.0)
    seen: list[str] = []

    def third_call_while_two_trials_run() -> str:
        with pytest.raises(CircuitOpenError) as err:
            breaker.call(ok)
        seen.append(err.value.state)
        return "ok"

    def second_trial() -> str:
        return breaker.call(third_call_while_two_trials_run)

    assert breaker.call(second_trial) == "ok"  # trial 1 runs trial 2, which sees call 3 rejected
    assert seen == ["half_open"]
    assert breaker.state == "closed"  # both trials succeeded


def test_all_trials_must_succeed(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics, half_open_max_calls=2)
    run(breaker, "ffff")
    clock.advance(30.0)
    run(breaker, "s")
    assert breaker.state == "half_open"
    run(breaker, "f")
    assert breaker.state == "open"


def test_outcome_of_a_call_from_an_earlier_state_changes_nothing(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)

    def slow_success_while_breaker_opens() -> str:
        run(breaker, "ffff")  # other calls open the breaker while this one runs
        return "ok"

    assert breaker.call(slow_success_while_breaker_opens) == "ok"
    assert breaker.state == "open"


def test_excluded_errors_propagate_but_count_as_success(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics, exclude=(NotFound,))

    def not_found() -> None:
        raise NotFound("no such order")

    for _ in range(10):
        with pytest.raises(NotFound):
            breaker.call(not_found)
    assert breaker.state == "closed"
    assert sdk_metrics.value("obsbox.circuit_breaker.calls", **{"breaker.outcome": "success"}) == 10
    assert sdk_metrics.value("obsbox.circuit_breaker.calls", **{"breaker.outcome": "failure"}) == 0


def test_failure_predicate_decides(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics, failure_on=lambda exc: "timeout" in str(exc))

    def raise_(msg: str) -> None:
        raise Boom(msg)

    for _ in range(4):
        with pytest.raises(Boom):
            breaker.call(raise_, "bad request")
    assert breaker.state == "closed"
    for _ in range(4):
        with pytest.raises(Boom):
            breaker.call(raise_, "timeout")
    assert breaker.state == "open"  # 4 of 8


def test_base_exceptions_do_not_count(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)

    def interrupted() -> None:
        raise KeyboardInterrupt

    for _ in range(6):
        with pytest.raises(KeyboardInterrupt):
            breaker.call(interrupted)
    assert breaker.state == "closed"
    assert [p.value for p in sdk_metrics.points("obsbox.circuit_breaker.calls")] == [0, 0, 0]


def test_decorator_keeps_the_function(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)

    @breaker
    def charge(amount: int, *, currency: str = "EUR") -> str:
        """Charge a card."""
        return f"{amount} {currency}"

    assert charge(5, currency="USD") == "5 USD"
    assert charge.__name__ == "charge" and charge.__doc__ == "Charge a card."
    assert sdk_metrics.value("obsbox.circuit_breaker.calls", **{"breaker.outcome": "success"}) == 1


def test_reset_closes(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)
    run(breaker, "ffff")
    breaker.reset()
    assert breaker.state == "closed"
    assert breaker.call(ok) == "ok"


@pytest.mark.parametrize(
    "kw",
    [dict(failure_ratio=0), dict(failure_ratio=1.5), dict(minimum_calls=0), dict(window=0),
     dict(reset_timeout=-1), dict(half_open_max_calls=0)],
)
def test_bad_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", **kw)  # type: ignore[arg-type]


# --- telemetry -------------------------------------------------------------------------------------------------


def test_metrics_follow_the_state_machine(clock: FakeClock, sdk_metrics: Metrics) -> None:
    breaker = make(clock, sdk_metrics)

    def state_gauge() -> dict[str, float | int | None]:
        points = sdk_metrics.points("obsbox.circuit_breaker.state")
        mine = [p for p in points if p.attributes["breaker.name"] == "payments"]
        assert {p.unit for p in mine} == {"{state}"}
        return {p.attributes["breaker.state"]: p.value for p in mine}

    assert state_gauge() == {"closed": 1, "open": 0, "half_open": 0}
    # every outcome and every transition of the state machine is reported from the start, at 0
    assert {p.attributes["breaker.outcome"]: p.value
            for p in sdk_metrics.points("obsbox.circuit_breaker.calls")} == {"success": 0, "failure": 0, "rejected": 0}
    assert {(p.attributes["breaker.from_state"], p.attributes["breaker.to_state"]): p.value
            for p in sdk_metrics.points("obsbox.circuit_breaker.transitions")} == {
        ("closed", "open"): 0, ("open", "half_open"): 0, ("half_open", "open"): 0, ("half_open", "closed"): 0}
    run(breaker, "sfff")
    assert state_gauge() == {"closed": 0, "open": 1, "half_open": 0}
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(30.0)
    run(breaker, "f")  # trial fails: half_open -> open
    clock.advance(30.0)
    assert breaker.state == "half_open"
    assert state_gauge() == {"closed": 0, "open": 0, "half_open": 1}
    run(breaker, "s")

    calls = {p.attributes["breaker.outcome"]: p.value for p in sdk_metrics.points("obsbox.circuit_breaker.calls")}
    assert calls == {"success": 2, "failure": 4, "rejected": 1}
    transitions = Counter(
        {(p.attributes["breaker.from_state"], p.attributes["breaker.to_state"]): p.value
         for p in sdk_metrics.points("obsbox.circuit_breaker.transitions")}
    )
    assert transitions == {("closed", "open"): 1, ("open", "half_open"): 2, ("half_open", "open"): 1,
                           ("half_open", "closed"): 1}
    assert len(sdk_metrics.points("obsbox.circuit_breaker.transitions")) == 4
    for point in sdk_metrics.points("obsbox.circuit_breaker.transitions"):
        assert point.unit == "{transition}" and point.monotonic is True
        assert point.attributes["breaker.name"] == "payments"


def test_a_newer_breaker_takes_over_its_names_gauge(clock: FakeClock, sdk_metrics: Metrics) -> None:
    old = make(clock, sdk_metrics)
    run(old, "ffff")
    assert old.state == "open"
    new = make(clock, sdk_metrics)  # the same dependency, rebuilt (say, the app factory ran again)
    states = {p.attributes["breaker.state"]: p.value for p in sdk_metrics.points("obsbox.circuit_breaker.state")}
    assert states == {"closed": 1, "open": 0, "half_open": 0}  # one series per state: the new breaker's
    del new
    import gc

    gc.collect()
    states = {p.attributes["breaker.state"]: p.value for p in sdk_metrics.points("obsbox.circuit_breaker.state")}
    assert states == {"closed": 0, "open": 1, "half_open": 0}  # the newer one is gone: the older reports again
    del old
    gc.collect()
    assert sdk_metrics.points("obsbox.circuit_breaker.state") == []  # the gauge holds nobody alive


def test_state_change_logs_and_span_event(
    clock: FakeClock, sdk_metrics: Metrics, spans: Spans, logs: list
) -> None:
    breaker = make(clock, sdk_metrics)
    with spans.tracer.start_as_current_span("checkout"):
        run(breaker, "ffff")
    (span,) = spans.finished("checkout")
    events = [e for e in span.events if e.name == "circuit_breaker.state_change"]
    assert [dict(e.attributes or {}) for e in events] == [
        {"breaker.name": "payments", "breaker.from_state": "closed", "breaker.to_state": "open"}
    ]
    records = [m.record for m in logs if "breaker_name" in m.record["extra"]]
    assert len(records) == 1
    record = records[0]
    assert record["level"].name == "WARNING"
    fields = {"breaker_name": "payments", "from_state": "closed", "to_state": "open"}
    assert {k: record["extra"].get(k) for k in fields} == fields  # (configure() may add trace_id/span_id)
    assert "4 of 4 calls failed" in record["message"]


def test_telemetry_failure_never_breaks_the_call(clock: FakeClock, sdk_metrics: Metrics, logs: list) -> None:
    from obsbox import logger

    def broken_sink(message: object) -> None:
        raise RuntimeError("sink down")

    handler = logger.add(broken_sink, catch=False)
    try:
        breaker = make(clock, sdk_metrics)
        run(breaker, "ffff")  # the transition's log line hits the broken sink
        assert breaker.state == "open"
    finally:
        logger.remove(handler)


# --- threads ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_timeout", [0.0, 0.002])
def test_concurrent_calls_keep_the_books_consistent(sdk_metrics: Metrics, reset_timeout: float) -> None:
    """8 threads hammer one breaker with a real clock; every call is counted once and the transitions chain."""
    breaker = CircuitBreaker("shared", failure_ratio=0.5, minimum_calls=5, window=1.0, reset_timeout=reset_timeout,
                             half_open_max_calls=2, meter_provider=sdk_metrics.provider)
    threads_n, calls_n = 8, 400
    in_trial = 0
    max_in_trial = 0
    lock = threading.Lock()
    unexpected: list[BaseException] = []

    def work(seed: int) -> None:
        nonlocal in_trial, max_in_trial
        for i in range(calls_n):
            def body(i: int = i) -> None:
                nonlocal in_trial, max_in_trial
                half_open = breaker._state == "half_open"  # read only to check the trial limit
                if half_open:
                    with lock:
                        in_trial += 1
                        max_in_trial = max(max_in_trial, in_trial)
                try:
                    if (i * 7 + seed) % 3:  # two thirds fail
                        raise Boom()
                finally:
                    if half_open:
                        with lock:
                            in_trial -= 1
            try:
                breaker.call(body)
            except (Boom, CircuitOpenError):
                pass
            except BaseException as exc:  # pragma: no cover - reported below
                unexpected.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert unexpected == []
    calls = {p.attributes["breaker.outcome"]: p.value for p in sdk_metrics.points("obsbox.circuit_breaker.calls")}
    assert sum(v or 0 for v in calls.values()) == threads_n * calls_n
    assert calls["failure"] > 0  # (how many are rejected depends on how the threads interleave)
    # Conservation: each state is entered as often as it is left, except the final one (entered once more).
    flow: Counter[str] = Counter({"closed": 1})
    for p in sdk_metrics.points("obsbox.circuit_breaker.transitions"):
        flow[p.attributes["breaker.to_state"]] += p.value or 0
        flow[p.attributes["breaker.from_state"]] -= p.value or 0
    final: BreakerState = breaker._state
    assert {s: n for s, n in flow.items() if n} == {final: 1}
    opened = sum(p.value or 0 for p in sdk_metrics.points("obsbox.circuit_breaker.transitions")
                 if p.attributes["breaker.to_state"] == "open")
    assert opened >= 1
    assert max_in_trial <= 2


def test_a_broken_meter_provider_leaves_everything_working(clock: FakeClock) -> None:
    from obsbox import Retry, WorkerPool

    class BrokenMeterProvider:
        def get_meter(self, *args: object, **kwargs: object) -> object:
            raise RuntimeError("metrics down")

    provider = BrokenMeterProvider()
    breaker = CircuitBreaker("p", minimum_calls=1, clock=clock, meter_provider=provider)  # type: ignore[arg-type]
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state == "open"
    retry = Retry("r", initial_backoff=0, meter_provider=provider)  # type: ignore[arg-type]
    assert retry.call(ok) == "ok"
    with WorkerPool("w", meter_provider=provider) as pool:  # type: ignore[arg-type]
        assert pool.submit(ok).result(timeout=5) == "ok"
