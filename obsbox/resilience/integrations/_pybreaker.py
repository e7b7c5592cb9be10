"""pybreaker → obsbox breaker telemetry: a listener for state changes and calls, plus counting of rejected calls.

>>> import pybreaker                                                            # doctest: +SKIP
>>> breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30, name="payments")     # doctest: +SKIP
>>> instrument_pybreaker(breaker)          # listener + rejection counting + state gauge   # doctest: +SKIP
or, listener only (pybreaker does not tell listeners about rejected calls, so `rejected` stays 0):
>>> breaker = pybreaker.CircuitBreaker(listeners=[PyBreakerListener("payments")])        # doctest: +SKIP

pybreaker's "half-open" is reported as obsbox's "half_open". A call failing with an excluded exception is a success
(pybreaker's own rule, and obsbox's).
"""

from __future__ import annotations

import contextvars
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import pybreaker
from opentelemetry import metrics

from obsbox.resilience._telemetry import BreakerTelemetry

__all__ = ["PyBreakerListener", "instrument_pybreaker"]

T = TypeVar("T")

# Set when pybreaker admitted the current call (it told the listeners `before_call`); a CircuitBreakerError raised
# without it is a rejection, one raised after it is the failing call that tripped the breaker.
_admitted: contextvars.ContextVar[bool] = contextvars.ContextVar("obsbox_pybreaker_admitted", default=False)


def _state_name(state: Any) -> str:
    name = getattr(state, "name", state)
    return str(name).replace("-", "_") if name else "closed"


class PyBreakerListener(pybreaker.CircuitBreakerListener):
    """Reports a pybreaker.CircuitBreaker's calls and state changes as obsbox breaker telemetry.

    `name` labels the metrics (default: the pybreaker breaker's own name, else "pybreaker").
    """

    def __init__(self, name: str | None = None, *, meter_provider: metrics.MeterProvider | None = None) -> None:
        self.name = name
        self._meter_provider = meter_provider
        self._lock = threading.Lock()
        self._telemetry: weakref.WeakKeyDictionary[pybreaker.CircuitBreaker, BreakerTelemetry] = (
            weakref.WeakKeyDictionary()
        )

    def telemetry(self, cb: pybreaker.CircuitBreaker) -> BreakerTelemetry:
        """The telemetry of `cb` (made on first use; also registers `cb` with the state gauge)."""
        found = self._telemetry.get(cb)
        if found is None:
            with self._lock:
                found = self._telemetry.get(cb)
                if found is None:
                    ref = weakref.ref(cb)

                    def state_of() -> str:
                        breaker = ref()
                        return _state_name(breaker.current_state) if breaker is not None else "closed"

                    name = self.name or cb.name or "pybreaker"
                    found = BreakerTelemetry(name, state_of, self._meter_provider)
                    self._telemetry[cb] = found
        return found

    def before_call(self, cb: pybreaker.CircuitBreaker, func: Callable[..., T], *args: Any, **kwargs: Any) -> None:
        _admitted.set(True)

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self.telemetry(cb).call("success")

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.telemetry(cb).call("failure")

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self.telemetry(cb).transition(_state_name(old_state), _state_name(new_state))

    def rejected(self, cb: pybreaker.CircuitBreaker) -> None:
        self.telemetry(cb).call("rejected")


def instrument_pybreaker(
    breaker: pybreaker.CircuitBreaker,
    name: str | None = None,
    *,
    meter_provider: metrics.MeterProvider | None = None,
) -> PyBreakerListener:
    """Add a PyBreakerListener to `breaker`, count its rejected calls, and report its state from now on.

    Idempotent: a breaker instrumented before keeps its listener, which is returned.
    """
    for existing in breaker.listeners:
        if isinstance(existing, PyBreakerListener):
            return existing
    listener = PyBreakerListener(name, meter_provider=meter_provider)
    listener.telemetry(breaker)
    breaker.add_listener(listener)
    original = breaker.call

    # pybreaker's decorator and `calling()` go through the instance's `call`, so wrapping it here sees every call.
    def call(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        token = _admitted.set(False)
        try:
            return original(func, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            if not _admitted.get():
                listener.rejected(breaker)
            raise
        finally:
            _admitted.reset(token)

    breaker.call = functools.wraps(original)(call)  # type: ignore[method-assign,assignment]
    return listener
