"""What a breaker, a retry policy or a worker pool reports, in one place, so obsbox's own classes and the
pybreaker/tenacity integrations emit exactly the same metrics, log lines and span events.

Telemetry never raises into the caller: a failing exporter or logger sink must not turn a successful call into an
error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import Observation

from obsbox.instrumentation.catalogue import CATALOGUE
from obsbox.instrumentation.logs import logger
from obsbox.resilience._instruments import Instruments, attributes, instruments

BREAKER_STATES = ("closed", "open", "half_open")
STATE_CHANGE_EVENT = "circuit_breaker.state_change"
RETRY_EVENT = "retry"

_STATE = CATALOGUE["obsbox.circuit_breaker.state"]
_TRANSITIONS = CATALOGUE["obsbox.circuit_breaker.transitions"]
_CALLS = CATALOGUE["obsbox.circuit_breaker.calls"]
_RETRY_CALLS = CATALOGUE["obsbox.retry.calls"]
_RETRY_RETRIES = CATALOGUE["obsbox.retry.retries"]
_RETRY_BACKOFF = CATALOGUE["obsbox.retry.backoff"]


class BreakerTelemetry:
    """Reports one named breaker: calls by outcome, state changes, and its current state for the gauge.

    `state_of` is asked for the current state (one of BREAKER_STATES) whenever the gauge is collected.
    """

    def __init__(
        self,
        name: str,
        state_of: Callable[[], str],
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.name = name
        self._state_of = state_of
        self._call_attrs = {o: attributes(_CALLS, name, o) for o in ("success", "failure", "rejected")}
        self._inst = _resolve(meter_provider)
        if self._inst is not None:
            self._inst.breaker_sources.add(name, self)

    def observations(self) -> Iterable[Observation]:
        current = self._state_of()
        return [
            Observation(1 if state == current else 0, attributes(_STATE, self.name, state))
            for state in BREAKER_STATES
        ]

    def call(self, outcome: str) -> None:
        """Count one call: success, failure or rejected."""
        try:  # noqa: SIM105 - try/except costs nothing on the fast path, contextlib.suppress does
            self._inst.breaker_calls.add(1, self._call_attrs[outcome])  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - telemetry never breaks the call
            pass

    def transition(self, from_state: str, to_state: str, *, detail: str = "") -> None:
        """Count a state change, log it, and add an event to the current span."""
        try:
            if self._inst is not None:
                self._inst.breaker_transitions.add(1, attributes(_TRANSITIONS, self.name, from_state, to_state))
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(
                    STATE_CHANGE_EVENT,
                    {"breaker.name": self.name, "breaker.from_state": from_state, "breaker.to_state": to_state},
                )
            log = logger.bind(breaker_name=self.name, from_state=from_state, to_state=to_state)
            # No format arguments: loguru then takes the message verbatim (a detail may contain braces).
            message = f"circuit breaker {self.name}: {from_state} -> {to_state}" + (f" ({detail})" if detail else "")
            (log.warning if to_state == "open" else log.info)(message)
        except Exception:  # noqa: BLE001 - telemetry never breaks the call
            pass


class RetryTelemetry:
    """Reports one named retry policy: final outcomes, each retry, and the backoff slept before it."""

    def __init__(self, name: str, meter_provider: metrics.MeterProvider | None = None) -> None:
        self.name = name
        self._inst = _resolve(meter_provider)
        self._name_attrs = attributes(_RETRY_RETRIES, name)
        self._outcome_attrs = {
            o: attributes(_RETRY_CALLS, name, o)
            for o in ("success_first_try", "success_after_retry", "exhausted", "non_retryable")
        }

    def outcome(self, outcome: str) -> None:
        """Count the final outcome of one retried operation."""
        try:  # noqa: SIM105 - see BreakerTelemetry.call
            self._inst.retry_calls.add(1, self._outcome_attrs[outcome])  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - telemetry never breaks the call
            pass

    def retry(self, attempt: int, delay: float, error: BaseException | None) -> None:
        """Record the retry about to happen: `attempt` is the number of the attempt that follows the sleep."""
        try:
            if self._inst is not None:
                self._inst.retry_retries.add(1, self._name_attrs)
                self._inst.retry_backoff.record(delay, attributes(_RETRY_BACKOFF, self.name))
            span = trace.get_current_span()
            if span.is_recording():
                event: dict[str, str | int | float] = {
                    "retry.name": self.name,
                    "retry.attempt": attempt,
                    "retry.delay": delay,
                }
                if error is not None:
                    # The type only: messages of HTTP client errors carry full URLs, query strings and all.
                    event["exception.type"] = _qualified_name(type(error))
                span.add_event(RETRY_EVENT, event)
        except Exception:  # noqa: BLE001 - telemetry never breaks the call
            pass


def _resolve(meter_provider: metrics.MeterProvider | None) -> Instruments | None:
    """The instruments to record through, or None if they cannot be made (then the object works unreported)."""
    try:
        return instruments(meter_provider)
    except Exception:  # noqa: BLE001 - a broken provider must not stop a breaker, retry or pool from working
        return None


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


_POOL_SIZE = CATALOGUE["obsbox.pool.size"]
_POOL_DURATION = CATALOGUE["obsbox.pool.task.duration"]


class PoolTelemetry:
    """Reports one named worker pool: size (asked of `size_of` at collection), busy workers, queue depth, and the
    duration of each task by outcome; `tracer` makes the tasks' spans."""

    def __init__(
        self,
        name: str,
        size_of: Callable[[], int],
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.name = name
        self._size_of = size_of
        self._inst = _resolve(meter_provider)
        self._name_attrs = attributes(_POOL_SIZE, name)
        self._outcome_attrs = {o: attributes(_POOL_DURATION, name, o) for o in ("success", "failure")}
        self.tracer = trace.get_tracer("obsbox.resilience", tracer_provider=tracer_provider)
        self.span_name = f"{name} task"
        # What this pool has added to the busy and queue-depth counters, so they can be brought back to zero when
        # the workers vanish (a fork, a closed event loop).
        self._counts_lock = threading.Lock()
        self._busy_now = 0
        self._queued_now = 0
        if self._inst is not None:
            self._inst.pool_sources.add(name, self)

    def observations(self) -> Iterable[Observation]:
        return [Observation(self._size_of(), self._name_attrs)]

    def busy(self, delta: int) -> None:
        with self._counts_lock:
            self._busy_now += delta
        try:  # noqa: SIM105 - see BreakerTelemetry.call
            self._inst.pool_busy.add(delta, self._name_attrs)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - telemetry never breaks the pool
            pass

    def queued(self, delta: int) -> None:
        with self._counts_lock:
            self._queued_now += delta
        try:  # noqa: SIM105 - see BreakerTelemetry.call
            self._inst.pool_queue_depth.add(delta, self._name_attrs)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - telemetry never breaks the pool
            pass

    def zero(self) -> None:
        """Take back every busy worker and queued task this pool reported (their work is gone)."""
        with self._counts_lock:
            busy, queued = self._busy_now, self._queued_now
        if busy:
            self.busy(-busy)
        if queued:
            self.queued(-queued)

    def after_fork(self) -> None:
        """In a forked child: the parent's threads and queue did not come along."""
        self._counts_lock = threading.Lock()
        self.zero()

    def task(self, seconds: float, outcome: str) -> None:
        try:  # noqa: SIM105 - see BreakerTelemetry.call
            self._inst.pool_task_duration.record(seconds, self._outcome_attrs[outcome])  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - telemetry never breaks the pool
            pass
