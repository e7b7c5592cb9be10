"""instrument(app): placeholder until the middleware lands."""

from __future__ import annotations

from typing import Any


def instrument(app: Any) -> Any:
    raise NotImplementedError
