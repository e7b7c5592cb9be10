"""obsbox: an observability stack in a box for Python services.

>>> import obsbox
>>> telemetry = obsbox.configure(service_name="orders")   # doctest: +SKIP
>>> obsbox.instrument(app)                                 # doctest: +SKIP
>>> obsbox.logger.info("order placed", order_id=42)        # doctest: +SKIP
"""

from obsbox.instrumentation.frameworks import instrument
from obsbox.instrumentation.logs import logger
from obsbox.instrumentation.sampling import SamplingRule
from obsbox.instrumentation.setup import Telemetry, configure
from obsbox.resilience import (
    AsyncWorkerPool,
    CircuitBreaker,
    CircuitOpenError,
    Retry,
    RetryExhaustedError,
    WorkerPool,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncWorkerPool",
    "CircuitBreaker",
    "CircuitOpenError",
    "Retry",
    "RetryExhaustedError",
    "SamplingRule",
    "Telemetry",
    "WorkerPool",
    "__version__",
    "configure",
    "instrument",
    "logger",
]
