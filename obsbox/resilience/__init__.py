"""Resilience patterns with built-in telemetry: circuit breakers, retries and worker pools.

>>> from obsbox.resilience import CircuitBreaker, Retry, WorkerPool, retryable_http_error
>>> payments = CircuitBreaker("payments", failure_ratio=0.5, minimum_calls=10)
>>> inventory = Retry("inventory", attempts=3, retry_on=retryable_http_error)
>>> payments.call(inventory.call, lambda: "ok")
'ok'

Integrations for pybreaker and tenacity live in obsbox.resilience.integrations.
"""

from obsbox.resilience.breaker import BreakerState, CircuitBreaker, CircuitOpenError
from obsbox.resilience.http_errors import RETRYABLE_STATUS_CODES, http_client_error, retryable_http_error
from obsbox.resilience.pool import AsyncWorkerPool, PoolFullError, WorkerPool
from obsbox.resilience.retry import Retry, RetryExhaustedError

__all__ = [
    "RETRYABLE_STATUS_CODES",
    "AsyncWorkerPool",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "PoolFullError",
    "Retry",
    "RetryExhaustedError",
    "WorkerPool",
    "http_client_error",
    "retryable_http_error",
]
