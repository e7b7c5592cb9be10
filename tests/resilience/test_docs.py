"""The usage examples at the top of the public modules run as written."""

from __future__ import annotations

import doctest
import gc
import importlib

import pytest

MODULES = [
    "obsbox.resilience",
    "obsbox.resilience.breaker",
    "obsbox.resilience.retry",
    "obsbox.resilience.http_errors",
    "obsbox.resilience.pool",
    "obsbox.resilience._window",
    "obsbox.instrumentation.process_metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    gc.collect()  # the examples' breakers and pools leave the global gauges with them
    assert result.failed == 0
