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
`retry`, every exception is retried (tenacity's default); without `stop`, tenacity never stops. Async strategies
(`async def`, tenacity.asyncio's retry_if_*) work with AsyncRetrying and async decorated functions.
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

    # Each hook splits into a decision (the user's strategy, sync or async) and a report of it, so the report
    # is the same whether tenacity's sync Retrying or its AsyncRetrying (which awaits async strategies) runs it.
    def report_retry(state: RetryCallState, decision: bool) -> bool:
        outcome = state.outcome
        if not decision:
            if outcome is not None and outcome.failed:
                telemetry.outcome("non_retryable")
            else:
                telemetry.outcome("success_first_try" if state.attempt_number == 1 else "success_after_retry")
        return decision

    def report_stop(state: RetryCallState, decision: bool) -> bool:
        # tenacity asks `stop` only after `retry` chose to retry, so True here means the call is exhausted.
        if decision:
            telemetry.outcome("exhausted")
        return decision

    def report_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        delay = state.next_action.sleep if state.next_action is not None else state.upcoming_sleep
        telemetry.retry(state.attempt_number + 1, float(delay), error)

    def failed(state: RetryCallState) -> bool:  # tenacity's default `retry`: every exception
        return state.outcome is not None and state.outcome.failed

    def never(state: RetryCallState) -> bool:  # tenacity's default `stop`
        return False

    return {
        "retry": _hook(retry or failed, report_retry, "retry"),
        "stop": _hook(stop or never, report_stop, "stop"),
        "before_sleep": _sleep_hook(before_sleep, report_sleep),
    }


def _is_async(strategy: Strategy) -> bool:
    return inspect.iscoroutinefunction(strategy) or inspect.iscoroutinefunction(
        getattr(strategy, "__call__", None)  # noqa: B004 - strategy objects such as tenacity's async_retry_base
    )


def _hook(strategy: Strategy, report: Callable[[RetryCallState, bool], bool], role: str) -> Strategy:
    if _is_async(strategy):

        async def async_hook(state: RetryCallState) -> bool:
            return report(state, bool(await strategy(state)))

        return async_hook

    def hook(state: RetryCallState) -> bool:
        decision = strategy(state)
        if inspect.isawaitable(decision):
            close = getattr(decision, "close", None)
            if close is not None:
                close()  # no "never awaited" warning on top of the error
            raise TypeError(f"tenacity_hooks: this {role} strategy returned an awaitable; declare it with async def "
                            "and run it with tenacity's AsyncRetrying")
        return report(state, bool(decision))

    return hook


def _sleep_hook(before_sleep: Strategy | None, report: Callable[[RetryCallState], None]) -> Strategy:
    if before_sleep is not None and _is_async(before_sleep):

        async def async_hook(state: RetryCallState) -> Any:
            report(state)
            return await before_sleep(state)

        return async_hook

    def hook(state: RetryCallState) -> Any:
        report(state)
        return before_sleep(state) if before_sleep is not None else None

    return hook
