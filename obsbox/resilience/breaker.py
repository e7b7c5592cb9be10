"""A circuit breaker for sync and async code, with its state, transitions and calls reported as it runs.

>>> from obsbox import CircuitBreaker, CircuitOpenError
>>> payments = CircuitBreaker("payments", failure_ratio=0.5, minimum_calls=10, window=30.0, reset_timeout=30.0)
>>> payments.call(lambda: "charged")
'charged'
>>> @payments
... def charge(amount: int) -> str:
...     return f"charged {amount}"
>>> charge(5)
'charged 5'
>>> payments.state
'closed'

States:
- closed: calls go through; each outcome is counted in a rolling window of the last `window` seconds. When at
  least `minimum_calls` calls are in the window and the share of failures reaches `failure_ratio`, the breaker
  opens.
- open: calls are rejected at once with `CircuitOpenError` (the function is not called) until `reset_timeout`
  seconds have passed; the first call after that (or a read of `.state`) moves the breaker to half_open — so
  without traffic the state gauge keeps saying open.
- half_open: up to `half_open_max_calls` trial calls are admitted, further calls are rejected. A failed trial
  reopens the breaker (for another `reset_timeout`); when all the trials have succeeded it closes (a fresh window).

Which errors count as failures is configurable: `failure_on` (exception types, or a predicate) picks them, default
every `Exception`; `exclude` (types, or a predicate) names errors that never count — say a 404 from the
dependency: it answered, so it is healthy (`obsbox.resilience.http_client_error` tells 4xx errors of httpx,
requests and urllib). Such an error propagates and counts as a success. `BaseException`s that are not `Exception`
(cancellation, KeyboardInterrupt) do not count at all; a cancelled trial call frees its slot.

One state machine serves threads and asyncio alike: the state is guarded by a lock held only for a few
instructions, never across the call itself.

Telemetry (names from obsbox.instrumentation.catalogue): `obsbox.circuit_breaker.state` (1 for the current state, 0
for the others), `obsbox.circuit_breaker.transitions` (breaker.from_state, breaker.to_state),
`obsbox.circuit_breaker.calls` (breaker.outcome: success, failure, rejected); on each state change a log line
through obsbox.logger (extra fields breaker_name, from_state, to_state; WARNING when opening, else INFO) and a
`circuit_breaker.state_change` event on the current span. The name labels every series, so give each dependency
its own; a breaker created under a name already in use takes over that name's state gauge while it lives (an app
factory run twice), and their call and transition counts add up.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal, ParamSpec, TypeVar

from opentelemetry import metrics

from obsbox.resilience._decorate import Decorator
from obsbox.resilience._telemetry import BreakerTelemetry
from obsbox.resilience._window import RollingWindow

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpenError"]

P = ParamSpec("P")
T = TypeVar("T")

BreakerState = Literal["closed", "open", "half_open"]
ErrorFilter = tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool]


class CircuitOpenError(Exception):
    """Raised instead of calling through an open (or fully busy half-open) breaker.

    `breaker` is the breaker's name; `retry_after` the seconds until it admits a trial call (0 when it is half-open
    and its trial slots are taken); `state` the breaker's state at rejection.
    """

    def __init__(self, breaker: str, retry_after: float, state: BreakerState = "open") -> None:
        self.breaker = breaker
        self.retry_after = max(0.0, retry_after)
        self.state: BreakerState = state
        if state == "open":
            message = f"circuit breaker {breaker!r} is open; retry in {self.retry_after:.1f}s"
        else:
            message = f"circuit breaker {breaker!r} is half-open and its trial calls are in progress"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.breaker, self.retry_after, self.state))


class CircuitBreaker(Decorator):
    """A named circuit breaker (see the module docs for the states and what is reported).

    >>> breaker = CircuitBreaker("inventory", minimum_calls=5, exclude=(KeyError,))
    >>> breaker.call(dict(a=1).get, "a")
    1

    Optional keyword parameters beyond the thresholds: `failure_on`, `exclude` (which errors count), `clock` (a
    monotonic clock in seconds, injectable for tests) and `meter_provider` (default: the global one that
    `obsbox.configure()` sets).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_ratio: float = 0.5,
        minimum_calls: int = 10,
        window: float = 30.0,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        failure_on: ErrorFilter = Exception,
        exclude: ErrorFilter = (),
        clock: Callable[[], float] = time.monotonic,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        if not name:
            raise ValueError("a circuit breaker needs a name")
        if not 0.0 < failure_ratio <= 1.0:
            raise ValueError(f"failure_ratio must be in (0, 1], got {failure_ratio}")
        if minimum_calls < 1:
            raise ValueError(f"minimum_calls must be >= 1, got {minimum_calls}")
        if reset_timeout < 0:
            raise ValueError(f"reset_timeout must be >= 0 seconds, got {reset_timeout}")
        if half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be >= 1, got {half_open_max_calls}")
        self.name = name
        self.failure_ratio = failure_ratio
        self.minimum_calls = minimum_calls
        self.window = window
        self.reset_timeout = reset_timeout
        self.half_open_max_calls = half_open_max_calls
        self._failure_on = failure_on
        self._exclude = exclude
        self._clock = clock
        self._lock = threading.Lock()
        self._window = RollingWindow(window)
        self._state: BreakerState = "closed"
        # Bumped on every transition: an outcome from a call admitted in an earlier state changes nothing.
        self._generation = 0
        self._opened_at = 0.0
        self._trials = 0
        self._trial_successes = 0
        self._telemetry = BreakerTelemetry(name, lambda: self._state, meter_provider)
        _breakers.add(self)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state!r})"

    # --- public API ---------------------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose reset timeout has passed reports (and becomes) half_open."""
        with self._lock:
            changes = self._advance(self._clock())
            state = self._state
        self._report(changes)
        return state

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn(*args, **kwargs)` through the breaker; raises CircuitOpenError without calling when open."""
        token = self._admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish_error(token, exc)
            raise
        self._finish(token, failed=False)
        return result

    async def call_async(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn(*args, **kwargs)` through the breaker; raises CircuitOpenError without calling when open."""
        token = self._admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish_error(token, exc)
            raise
        self._finish(token, failed=False)
        return result

    def reset(self) -> None:
        """Close the breaker and forget the window (an operator's override)."""
        with self._lock:
            changes = [] if self._state == "closed" else [self._move("closed", self._clock(), "reset")]
        self._report(changes)

    # --- the state machine (all under self._lock; telemetry after it is released) -------------------------------

    def _admit(self) -> int:
        # Lock-free fast path for the common case. Reading the generation before the state is what makes it safe:
        # if the state still reads closed, either nothing changed in between or the breaker went round and came
        # back with a newer generation — and an outcome carrying an old generation changes nothing.
        token = self._generation
        if self._state == "closed":
            return token
        with self._lock:
            now = self._clock()
            changes = self._advance(now)
            state = self._state
            token = self._generation
            rejected: CircuitOpenError | None = None
            if state == "open":
                rejected = CircuitOpenError(self.name, self._opened_at + self.reset_timeout - now, "open")
            elif state == "half_open":
                if self._trials < self.half_open_max_calls:
                    self._trials += 1
                else:
                    rejected = CircuitOpenError(self.name, 0.0, "half_open")
        self._report(changes)
        if rejected is not None:
            self._telemetry.call("rejected")
            raise rejected
        return token

    def _finish_error(self, token: int, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            self._finish(token, failed=self._is_failure(exc))
            return
        # Cancelled or interrupted: the dependency did not answer either way. Free a half-open trial slot.
        with self._lock:
            if token == self._generation and self._state == "half_open":
                self._trials = max(0, self._trials - 1)

    def _finish(self, token: int, *, failed: bool) -> None:
        with self._lock:
            now = self._clock()
            changes: list[tuple[str, str, str]] = []
            if token == self._generation:
                if self._state == "closed":
                    calls, failures = self._window.record(now, failed=failed)
                    if calls >= self.minimum_calls and failures >= self.failure_ratio * calls:
                        detail = f"{failures} of {calls} calls failed within {self.window:g}s"
                        changes.append(self._move("open", now, detail))
                elif self._state == "half_open":
                    if failed:
                        changes.append(self._move("open", now, "trial call failed"))
                    else:
                        self._trial_successes += 1
                        if self._trial_successes >= self.half_open_max_calls:
                            changes.append(self._move("closed", now, "trial calls succeeded"))
        self._telemetry.call("failure" if failed else "success")
        self._report(changes)

    def _advance(self, now: float) -> list[tuple[str, str, str]]:
        if self._state == "open" and now >= self._opened_at + self.reset_timeout:
            return [self._move("half_open", now, f"reset timeout of {self.reset_timeout:g}s passed")]
        return []

    def _move(self, to_state: BreakerState, now: float, detail: str) -> tuple[str, str, str]:
        from_state = self._state
        self._state = to_state
        self._generation += 1
        self._trials = self._trial_successes = 0
        if to_state == "open":
            self._opened_at = now
        if to_state == "closed":
            self._window.clear()
        return (from_state, to_state, detail)

    def _report(self, changes: list[tuple[str, str, str]]) -> None:
        for from_state, to_state, detail in changes:
            self._telemetry.transition(from_state, to_state, detail=detail)

    def _is_failure(self, exc: Exception) -> bool:
        return _matches(self._failure_on, exc, broken=True) and not _matches(self._exclude, exc, broken=False)


def _matches(rule: ErrorFilter, exc: Exception, *, broken: bool) -> bool:
    """Whether `exc` matches exception types or a predicate; `broken` is the answer when the predicate raises."""
    if isinstance(rule, type | tuple):
        return isinstance(exc, rule)
    try:
        return bool(rule(exc))
    except Exception:  # noqa: BLE001 - a broken predicate must not hide the original error
        return broken

_breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held a breaker's lock at the moment of the fork; in the child that thread
    # is gone and the lock would stay taken forever. The state itself (a plain copy) stays valid.
    for breaker in list(_breakers):
        breaker._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
