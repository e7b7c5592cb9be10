"""tenacity → obsbox retry telemetry: wrappers for tenacity's `retry`, `stop` and `before_sleep` arguments.

>>> import tenacity                                                                       # doctest: +SKIP
>>> @tenacity.retry(
...     wait=tenacity.wait_random_exponential(multiplier=0.1, max=5),
...     **tenacity_hooks("inventory", retry=tenacity.retry_if_exception_type(TimeoutError),
...                      stop=tenacity.stop_after_attempt(3)),
... )
... def reserve(sku: str) -> None: ...                                                    # doctest: +SKIP

Pass your own `retry`, `stop` and `before_sleep` strategies to tenacity_hooks instead of to tenacity.retry: the
returned kwargs call them and record what they decide — `obsbox.retry.calls` by outcome (success_first_try,
success_after_retry, exhausted when `stop` ends a retrying call, non_retryable when `retry` declines a failed
attempt), `obsbox.retry.retries`, `obsbox.retry.backoff` and a `retry` span event before each sleep. Without
`retry`, every exception is retried (tenacity's default); without `stop`, tenacity never stops. The strategies must
be synchronous (tenacity's built-in ones are).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics
from tenacity import RetryCallState

from obsbox.resilience._telemetry import RetryTelemetry

__all__ = ["tenacity_hooks"]

Strategy = Callable[[RetryCallState], Any]


def tenacity_hooks(
    name: str,
    *,
    retry: Strategy | None = None,
    stop: Strategy | None = None,
    before_sleep: Strategy | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> dict[str, Any]:
    """Keyword arguments for tenacity.retry / Retrying / AsyncRetrying that report under the retry name `name`."""
    telemetry = RetryTelemetry(name, meter_provider)

    def retry_hook(state: RetryCallState) -> bool:
        outcome = state.outcome
        failed = outcome is not None and outcome.failed
        decision = _decide(retry, state, "retry") if retry is not None else failed
        if not decision:
            if failed:
                telemetry.outcome("non_retryable")
            else:
                telemetry.outcome("success_first_try" if state.attempt_number == 1 else "success_after_retry")
        return decision

    def stop_hook(state: RetryCallState) -> bool:
        # tenacity asks `stop` only after `retry` chose to retry, so True here means the call is exhausted.
        decision = _decide(stop, state, "stop") if stop is not None else False
        if decision:
            telemetry.outcome("exhausted")
        return decision

    def before_sleep_hook(state: RetryCallState) -> Any:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        delay = state.next_action.sleep if state.next_action is not None else state.upcoming_sleep
        telemetry.retry(state.attempt_number + 1, float(delay), error)
        return before_sleep(state) if before_sleep is not None else None

    return {"retry": retry_hook, "stop": stop_hook, "before_sleep": before_sleep_hook}


def _decide(strategy: Strategy, state: RetryCallState, role: str) -> bool:
    decision = strategy(state)
    if inspect.isawaitable(decision):
        close = getattr(decision, "close", None)
        if close is not None:
            close()  # no "never awaited" warning on top of the error
        raise TypeError(f"tenacity_hooks: the {role} strategy must be synchronous (tenacity's built-in ones are)")
    return bool(decision)
