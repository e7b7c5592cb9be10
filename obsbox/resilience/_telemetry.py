"""What a breaker, a retry policy or a worker pool reports, in one place, so obsbox's own classes and the
pybreaker/tenacity integrations emit exactly the same metrics, log lines and span events.

Counts go to shared running totals (see _instruments); known label sets (every call outcome, the usual breaker
transitions) start at 0 when the object is made, so `increase()` in Prometheus sees their very first event.
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
from obsbox.resilience._instruments import Cell, Instruments, attributes, detached, instruments

BREAKER_STATES = ("closed", "open", "half_open")
BREAKER_OUTCOMES = ("success", "failure", "rejected")
# The transitions of the state machine; a manual reset() may add open -> closed and half_open -> closed.
BREAKER_TRANSITIONS = (("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("half_open", "closed"))
RETRY_OUTCOMES = ("success_first_try", "success_after_retry", "exhausted", "non_retryable")
TASK_OUTCOMES = ("success", "failure")
STATE_CHANGE_EVENT = "circuit_breaker.state_change"
RETRY_EVENT = "retry"

_STATE = CATALOGUE["obsbox.circuit_breaker.state"]
_RETRY_BACKOFF = CATALOGUE["obsbox.retry.backoff"]
_POOL_SIZE = CATALOGUE["obsbox.pool.size"]
_POOL_DURATION = CATALOGUE["obsbox.pool.task.duration"]


def _resolve(meter_provider: metrics.MeterProvider | None) -> Instruments:
    """The instruments to record through; if the provider fails, ones that report nowhere (the object works)."""
    try:
        return instruments(meter_provider)
    except Exception:  # noqa: BLE001 - a broken provider must not stop a breaker, retry or pool from working
        return detached()


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
        self._inst = _resolve(meter_provider)
        self._calls = {o: self._inst.breaker_calls.cell(name, o) for o in BREAKER_OUTCOMES}
        self._transitions: dict[tuple[str, str], Cell] = {
            pair: self._inst.breaker_transitions.cell(name, *pair) for pair in BREAKER_TRANSITIONS
        }
        self._inst.breaker_sources.add(name, self)

    def observations(self) -> Iterable[Observation]:
        current = self._state_of()
        return [
            Observation(1 if state == current else 0, attributes(_STATE, self.name, state))
            for state in BREAKER_STATES
        ]

    def call(self, outcome: str) -> None:
        """Count one call: success, failure or rejected."""
        self._calls[outcome].add(1)

    def transition(self, from_state: str, to_state: str, *, detail: str = "") -> None:
        """Count a state change, log it, and add an event to the current span."""
        try:
            pair = (from_state, to_state)
            cell = self._transitions.get(pair)
            if cell is None:
                cell = self._transitions[pair] = self._inst.breaker_transitions.cell(self.name, *pair)
            cell.add(1)
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
        self._outcomes = {o: self._inst.retry_calls.cell(name, o) for o in RETRY_OUTCOMES}
        self._retries = self._inst.retry_retries.cell(name)
        self._backoff_attrs = attributes(_RETRY_BACKOFF, name)

    def outcome(self, outcome: str) -> None:
        """Count the final outcome of one retried operation."""
        self._outcomes[outcome].add(1)

    def retry(self, attempt: int, delay: float, error: BaseException | None) -> None:
        """Record the retry about to happen: `attempt` is the number of the attempt that follows the sleep."""
        try:
            self._retries.add(1)
            self._inst.retry_backoff.record(delay, self._backoff_attrs)
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
        self._size_attrs = attributes(_POOL_SIZE, name)
        self._busy = self._inst.pool_busy.cell(name)
        self._queued = self._inst.pool_queue_depth.cell(name)
        self._outcome_attrs = {o: attributes(_POOL_DURATION, name, o) for o in TASK_OUTCOMES}
        self.tracer = trace.get_tracer("obsbox.resilience", tracer_provider=tracer_provider)
        self.span_name = f"{name} task"
        # This pool's own share of the busy and queue-depth totals (pools of the same name share them), so it can
        # take it back when its workers vanish (a fork, a closed event loop).
        self._share_lock = threading.Lock()
        self._busy_share = 0
        self._queued_share = 0
        self._inst.pool_sources.add(name, self)

    def observations(self) -> Iterable[Observation]:
        return [Observation(self._size_of(), self._size_attrs)]

    def busy(self, delta: int) -> None:
        with self._share_lock:
            self._busy_share += delta
        self._busy.add(delta)

    def queued(self, delta: int) -> None:
        with self._share_lock:
            self._queued_share += delta
        self._queued.add(delta)

    def zero(self) -> None:
        """Take back every busy worker and queued task this pool reported (their work is gone)."""
        with self._share_lock:
            busy, queued = self._busy_share, self._queued_share
        if busy:
            self.busy(-busy)
        if queued:
            self.queued(-queued)

    def after_fork(self) -> None:
        """In a forked child: the parent's threads and queue did not come along."""
        self._share_lock = threading.Lock()
        self.zero()

    def task(self, seconds: float, outcome: str) -> None:
        try:  # noqa: SIM105 - try/except costs nothing on the fast path, contextlib.suppress does
            self._inst.pool_task_duration.record(seconds, self._outcome_attrs[outcome])
        except Exception:  # noqa: BLE001 - telemetry never breaks the pool
            pass


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
