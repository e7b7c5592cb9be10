"""obsbox telemetry for the resilience libraries people already use: pybreaker and tenacity.

>>> import pybreaker                                                           # doctest: +SKIP
>>> from obsbox.resilience.integrations import instrument_pybreaker, tenacity_hooks
>>> breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30, name="payments")    # doctest: +SKIP
>>> instrument_pybreaker(breaker)                                              # doctest: +SKIP
>>> @tenacity.retry(wait=tenacity.wait_random_exponential(max=5),              # doctest: +SKIP
...                 **tenacity_hooks("inventory", stop=tenacity.stop_after_attempt(3)))
... def reserve(sku): ...

Both emit exactly the metrics, log lines and span events of obsbox's own CircuitBreaker and Retry, so the same
dashboards and alerts cover them. The libraries are imported only when these names are first used; without them
the import error says which `pip install` fixes it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from obsbox.resilience.integrations._pybreaker import PyBreakerListener, instrument_pybreaker
    from obsbox.resilience.integrations._tenacity import tenacity_hooks

__all__ = ["PyBreakerListener", "instrument_pybreaker", "tenacity_hooks"]

_WHERE = {
    "PyBreakerListener": ("_pybreaker", "pybreaker"),
    "instrument_pybreaker": ("_pybreaker", "pybreaker"),
    "tenacity_hooks": ("_tenacity", "tenacity"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, package = _WHERE[name]
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(
            f"obsbox.resilience.integrations.{name} needs {package}, which is not installed: "
            f"pip install 'obsbox[resilience]'"
        ) from exc
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, name)
