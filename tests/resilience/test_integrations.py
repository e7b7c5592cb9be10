"""pybreaker and tenacity, the real libraries, reporting through obsbox's breaker and retry telemetry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter

import pybreaker
import pytest
import tenacity

from obsbox.resilience.integrations import PyBreakerListener, instrument_pybreaker, tenacity_hooks

from .conftest import Metrics, Spans


class Boom(Exception):
    pass


class NotFound(Exception):
    pass


def fail() -> None:
    raise Boom()


def calls_by_outcome(sdk_metrics: Metrics, metric: str, key: str) -> dict[str, float | int | None]:
    """Outcomes counted so far (the ones still at 0 left out)."""
    return {p.attributes[key]: p.value for p in sdk_metrics.points(metric) if p.value}


# --- pybreaker -------------------------------------------------------------------------------------------------


def test_pybreaker_lifecycle_is_reported(sdk_metrics: Metrics, logs: list) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=0.05, name="payments", exclude=[NotFound])
    listener = instrument_pybreaker(cb, meter_provider=sdk_metrics.provider)
    assert instrument_pybreaker(cb) is listener  # idempotent

    def gauge() -> dict[str, float | int | None]:
        return {p.attributes["breaker.state"]: p.value for p in sdk_metrics.points("obsbox.circuit_breaker.state")
                if p.attributes["breaker.name"] == "payments"}

    assert gauge() == {"closed": 1, "open": 0, "half_open": 0}
    assert cb.call(lambda: "ok") == "ok"

    def not_found() -> None:
        raise NotFound()

    with pytest.raises(NotFound):
        cb.call(not_found)  # excluded: a success for pybreaker and for obsbox
    for _ in range(2):
        with pytest.raises(Boom):
            cb.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        cb.call(fail)  # the third failure trips the breaker (pybreaker raises its own error here)
    assert gauge() == {"closed": 0, "open": 1, "half_open": 0}
    called = []
    for _ in range(2):
        with pytest.raises(pybreaker.CircuitBreakerError):
            cb.call(called.append, 1)  # rejected without calling
    assert called == []

    @cb
    def decorated() -> str:
        return "via decorator"

    with pytest.raises(pybreaker.CircuitBreakerError):
        decorated()  # still open: rejected through the decorator path too
    time.sleep(0.06)
    assert decorated() == "via decorator"  # half-open trial succeeds: closed
    assert gauge() == {"closed": 1, "open": 0, "half_open": 0}

    assert calls_by_outcome(sdk_metrics, "obsbox.circuit_breaker.calls", "breaker.outcome") == {
        "success": 3, "failure": 3, "rejected": 3,
    }
    transitions = Counter({(p.attributes["breaker.from_state"], p.attributes["breaker.to_state"]): p.value
                           for p in sdk_metrics.points("obsbox.circuit_breaker.transitions") if p.value})
    assert transitions == {("closed", "open"): 1, ("open", "half_open"): 1, ("half_open", "closed"): 1}
    keys = ("breaker_name", "from_state", "to_state")
    extras = [{k: m.record["extra"][k] for k in keys} for m in logs if "breaker_name" in m.record["extra"]]
    assert extras == [
        {"breaker_name": "payments", "from_state": "closed", "to_state": "open"},
        {"breaker_name": "payments", "from_state": "open", "to_state": "half_open"},
        {"breaker_name": "payments", "from_state": "half_open", "to_state": "closed"},
    ]


def test_pybreaker_listener_alone_and_span_event(sdk_metrics: Metrics, spans: Spans) -> None:
    listener = PyBreakerListener("inventory", meter_provider=sdk_metrics.provider)
    cb = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, listeners=[listener])
    with spans.tracer.start_as_current_span("reserve"):
        with pytest.raises(Boom):
            cb.call(fail)
        with pytest.raises(pybreaker.CircuitBreakerError):
            cb.call(fail)
    (span,) = spans.finished("reserve")
    assert [dict(e.attributes or {}) for e in span.events if e.name == "circuit_breaker.state_change"] == [
        {"breaker.name": "inventory", "breaker.from_state": "closed", "breaker.to_state": "open"}
    ]
    assert calls_by_outcome(sdk_metrics, "obsbox.circuit_breaker.calls", "breaker.outcome") == {"failure": 2}


# --- tenacity --------------------------------------------------------------------------------------------------


def flaky(times: int, error: type[Exception] = Boom) -> tuple[dict[str, int], object]:
    state = {"calls": 0}

    def fn() -> str:
        state["calls"] += 1
        if state["calls"] <= times:
            raise error()
        return "ok"

    return state, fn


def test_tenacity_outcomes_retries_and_backoff(sdk_metrics: Metrics, spans: Spans) -> None:
    hooks = tenacity_hooks("inventory", retry=tenacity.retry_if_exception_type(Boom),
                           stop=tenacity.stop_after_attempt(3), meter_provider=sdk_metrics.provider)

    def run(fn: object) -> object:
        return tenacity.Retrying(wait=tenacity.wait_fixed(0.001), **hooks)(fn)

    _, first_try = flaky(0)
    assert run(first_try) == "ok"
    with spans.tracer.start_as_current_span("reserve"):
        _, after_retry = flaky(2)
        assert run(after_retry) == "ok"
    state, never = flaky(99)
    with pytest.raises(tenacity.RetryError):
        run(never)
    assert state["calls"] == 3
    state, wrong = flaky(99, NotFound)
    with pytest.raises(NotFound):
        run(wrong)
    assert state["calls"] == 1

    assert calls_by_outcome(sdk_metrics, "obsbox.retry.calls", "retry.outcome") == {
        "success_first_try": 1, "success_after_retry": 1, "exhausted": 1, "non_retryable": 1,
    }
    assert sdk_metrics.value("obsbox.retry.retries", **{"retry.name": "inventory"}) == 4
    (backoff,) = sdk_metrics.points("obsbox.retry.backoff")
    assert backoff.count == 4 and backoff.sum == pytest.approx(0.004)
    (span,) = spans.finished("reserve")
    events = [dict(e.attributes or {}) for e in span.events if e.name == "retry"]
    assert [e["retry.attempt"] for e in events] == [2, 3]
    assert all(e["exception.type"] == f"{__name__}.Boom" and e["retry.delay"] == 0.001 for e in events)


def test_tenacity_decorator_reraise_and_user_before_sleep(sdk_metrics: Metrics) -> None:
    slept: list[int] = []

    @tenacity.retry(wait=tenacity.wait_none(), reraise=True,
                    **tenacity_hooks("payments", stop=tenacity.stop_after_attempt(2),
                                     before_sleep=lambda rs: slept.append(rs.attempt_number),
                                     meter_provider=sdk_metrics.provider))
    def charge() -> None:
        raise Boom()

    with pytest.raises(Boom):  # reraise=True is tenacity's, untouched
        charge()
    assert slept == [1]
    assert calls_by_outcome(sdk_metrics, "obsbox.retry.calls", "retry.outcome") == {"exhausted": 1}


def test_tenacity_async(sdk_metrics: Metrics) -> None:
    calls = 0

    @tenacity.retry(wait=tenacity.wait_none(),
                    **tenacity_hooks("async", stop=tenacity.stop_after_attempt(5),
                                     meter_provider=sdk_metrics.provider))
    async def flaky_async() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls < 3:
            raise ConnectionError()
        return "ok"

    assert asyncio.run(flaky_async()) == "ok"
    assert calls_by_outcome(sdk_metrics, "obsbox.retry.calls", "retry.outcome") == {"success_after_retry": 1}
    assert sdk_metrics.value("obsbox.retry.retries") == 2


def test_tenacity_async_strategies(sdk_metrics: Metrics) -> None:
    """Async retry/stop/before_sleep strategies are awaited under AsyncRetrying and reported the same way."""
    slept: list[int] = []

    async def retry_on_connection_errors(state: tenacity.RetryCallState) -> bool:
        await asyncio.sleep(0)
        return state.outcome is not None and isinstance(state.outcome.exception(), ConnectionError)

    async def after_three(state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= 3

    async def note(state: tenacity.RetryCallState) -> None:
        slept.append(state.attempt_number)

    hooks = tenacity_hooks("async-strategies", retry=retry_on_connection_errors, stop=after_three,
                           before_sleep=note, meter_provider=sdk_metrics.provider)

    async def always_down() -> None:
        raise ConnectionError()

    async def wrong() -> None:
        raise ValueError()

    async def scenario() -> None:
        with pytest.raises(tenacity.RetryError):
            await tenacity.AsyncRetrying(wait=tenacity.wait_none(), **hooks)(always_down)
        with pytest.raises(ValueError):
            await tenacity.AsyncRetrying(wait=tenacity.wait_none(), **hooks)(wrong)

    asyncio.run(scenario())
    assert slept == [1, 2]
    assert calls_by_outcome(sdk_metrics, "obsbox.retry.calls", "retry.outcome") == {
        "exhausted": 1, "non_retryable": 1}
    assert sdk_metrics.value("obsbox.retry.retries") == 2


def test_tenacity_hidden_awaitable_is_refused_clearly(sdk_metrics: Metrics) -> None:
    """A plain function returning a coroutine cannot be told apart in advance; running it says what to do."""

    async def decide(state: tenacity.RetryCallState) -> bool:
        return True

    hooks = tenacity_hooks("hidden", retry=lambda state: decide(state), meter_provider=sdk_metrics.provider)
    with pytest.raises(TypeError, match="AsyncRetrying"):
        tenacity.Retrying(**hooks)(lambda: 1)


# --- without the libraries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,package", [("instrument_pybreaker", "pybreaker"), ("tenacity_hooks", "tenacity")])
def test_missing_library_names_the_install_command(name: str, package: str) -> None:
    """In a fresh interpreter where the library cannot be imported, the error says which pip install fixes it."""
    code = (
        "import sys\n"
        f"sys.modules[{package!r}] = None  # import of it now fails, as if not installed\n"
        "try:\n"
        f"    from obsbox.resilience.integrations import {name}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'obsbox[resilience]'" in out.stdout and package in out.stdout


def test_integrations_import_their_library_only_when_used() -> None:
    code = (
        "import sys\n"
        "import obsbox, obsbox.resilience.integrations\n"
        "print(sorted(m for m in ('pybreaker', 'tenacity') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
