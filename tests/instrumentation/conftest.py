"""The fixture the request-path tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.instrumentation.test_asgi_core import Captured, captured


@pytest.fixture
def capture() -> Iterator[Captured]:
    """For one test, the runtime's tracer and recorders replaced by an in-memory capture (see `captured`)."""
    with captured() as cap:
        yield cap
