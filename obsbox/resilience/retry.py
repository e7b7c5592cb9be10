"""Retries with exponential backoff and full jitter, for sync and async code, reported as they happen.

>>> from obsbox import Retry
>>> from obsbox.resilience import retryable_http_error
>>> inventory = Retry("inventory", attempts=3, initial_backoff=0.1, max_backoff=2.0, retry_on=retryable_http_error)
>>> inventory.call(lambda: "in stock")
'in stock'
>>> @inventory
... async def reserve(sku: str) -> str:
...     return sku

Backoff before retry n (n = 1 for the first retry):
    cap(n)   = min(max_backoff, initial_backoff * multiplier ** (n - 1))
    delay(n) = uniform(0, cap(n))   with jitter ("full jitter": spreads retries of many clients evenly)
    delay(n) = cap(n)               with jitter=False

Which errors are retried is the caller's choice: `retry_on` takes exception types or a predicate
`(exc) -> bool` (default: every Exception). `obsbox.resilience.retryable_http_error` is a ready-made predicate for
HTTP clients. An error that is not retryable propagates unchanged at once. When every attempt failed, or the next
sleep would pass the optional overall `deadline` (seconds since the first attempt began), `RetryExhaustedError` is
raised from the last error (`__cause__`). A running attempt is never interrupted by the deadline.

When the error is an HTTP response carrying `Retry-After` (429, 503; httpx, requests or urllib), the sleep is at
least what the server asked; if it asked for more than `max_backoff`, the policy gives up at once (exhausted)
rather than knock again early. `respect_retry_after=False` ignores the header.

With a circuit breaker inside the retry (`retry.call(breaker.call, fn)`), keep `CircuitOpenError` out of
`retry_on` — `retryable_http_error` does — so an open breaker fails the request at once instead of being retried.

Telemetry (names from obsbox.instrumentation.catalogue): `obsbox.retry.calls` by retry.outcome (success_first_try,
success_after_retry, exhausted, non_retryable), `obsbox.retry.retries` (one per retry), `obsbox.retry.backoff`
(seconds slept before each retry), and a `retry` event on the current span per retry (retry.attempt — the number
of the attempt about to run —, retry.delay, exception.type; not the message, which for HTTP clients holds the
full URL).
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

from opentelemetry import metrics

from obsbox.resilience._decorate import Decorator
from obsbox.resilience._telemetry import RetryTelemetry
from obsbox.resilience.http_errors import retry_after

__all__ = ["Retry", "RetryExhaustedError", "RetryOn"]

P = ParamSpec("P")
T = TypeVar("T")

RetryOn = tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool]


class RetryExhaustedError(Exception):
    """Every attempt failed (or the deadline left no room for another); the last error is `__cause__`.

    `retry` is the policy's name, `attempts` how many attempts ran, `last_error` the last attempt's error.
    """

    def __init__(self, retry: str, attempts: int, last_error: BaseException) -> None:
        self.retry = retry
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(
            f"{retry!r} gave up after {attempts} attempt{'s' if attempts != 1 else ''}: "
            f"{type(last_error).__name__}: {last_error}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.retry, self.attempts, self.last_error))


class Retry(Decorator):
    """A named retry policy (see the module docs for the backoff formula and what is reported).

    Optional keyword parameters beyond the contract: `deadline` (overall seconds), `respect_retry_after`, and for
    tests `sleep`, `async_sleep`, `clock` (monotonic seconds), `random` (returns a float in [0, 1)),
    `meter_provider` (default: the global one that `obsbox.configure()` sets).
    """

    def __init__(
        self,
        name: str,
        *,
        attempts: int = 3,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        multiplier: float = 2.0,
        jitter: bool = True,
        retry_on: RetryOn = Exception,
        deadline: float | None = None,
        respect_retry_after: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        if not name:
            raise ValueError("a retry policy needs a name")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if initial_backoff < 0 or max_backoff < 0:
            raise ValueError("backoffs must be >= 0 seconds")
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        if deadline is not None and deadline <= 0:
            raise ValueError(f"deadline must be > 0 seconds, got {deadline}")
        self.name = name
        self.attempts = attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.multiplier = multiplier
        self.jitter = jitter
        self.deadline = deadline
        self.respect_retry_after = respect_retry_after
        self._retry_on = retry_on
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock
        self._random = random
        self._telemetry = RetryTelemetry(name, meter_provider)

    def __repr__(self) -> str:
        return f"Retry({self.name!r}, attempts={self.attempts})"

    def backoff_cap(self, retry_number: int) -> float:
        """The upper bound of the sleep before retry `retry_number` (1 for the first retry)."""
        # Exponent capped so a large attempt count cannot overflow a float.
        exponent = min(retry_number - 1, 1000)
        try:
            grown = self.initial_backoff * self.multiplier**exponent
        except OverflowError:
            grown = self.max_backoff
        return min(self.max_backoff, grown)

    def backoff(self, retry_number: int) -> float:
        """The sleep before retry `retry_number`: uniform in [0, cap] with jitter, else the cap."""
        cap = self.backoff_cap(retry_number)
        return cap * self._random() if self.jitter else cap

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn(*args, **kwargs)`, retrying retryable errors."""
        started = self._clock()
        attempt = 1
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                delay = self._next_delay(exc, attempt, started)
                self._sleep(delay)
                attempt += 1
                continue
            self._succeeded(attempt)
            return result

    async def call_async(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn(*args, **kwargs)`, retrying retryable errors (sleeping with asyncio)."""
        started = self._clock()
        attempt = 1
        while True:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                delay = self._next_delay(exc, attempt, started)
                await self._async_sleep(delay)
                attempt += 1
                continue
            self._succeeded(attempt)
            return result

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether `exc` is retried under this policy's `retry_on`."""
        rule = self._retry_on
        if isinstance(rule, type | tuple):
            return isinstance(exc, rule)
        try:
            return bool(rule(exc))
        except Exception:  # noqa: BLE001 - a broken predicate means: do not retry, let the error through
            return False

    # --- shared by call and call_async --------------------------------------------------------------------------

    def _next_delay(self, exc: Exception, attempt: int, started: float) -> float:
        """The sleep before the next attempt, or raise: the error itself or RetryExhaustedError."""
        if not self.is_retryable(exc):
            self._telemetry.outcome("non_retryable")
            raise exc
        if attempt >= self.attempts:
            self._exhausted(attempt, exc)
        delay = self.backoff(attempt)
        if self.respect_retry_after:
            asked = retry_after(exc)
            if asked is not None:
                if asked > self.max_backoff:
                    self._exhausted(attempt, exc)  # the server wants more patience than this policy has
                delay = max(delay, asked)
        if self.deadline is not None and self._clock() - started + delay > self.deadline:
            self._exhausted(attempt, exc)
        self._telemetry.retry(attempt + 1, delay, exc)
        return delay

    def _exhausted(self, attempts: int, exc: Exception) -> NoReturn:
        self._telemetry.outcome("exhausted")
        raise RetryExhaustedError(self.name, attempts, exc) from exc

    def _succeeded(self, attempt: int) -> None:
        self._telemetry.outcome("success_first_try" if attempt == 1 else "success_after_retry")
