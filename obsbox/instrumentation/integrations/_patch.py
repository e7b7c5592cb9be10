"""Wrapping a class's method once, and undoing it: what the driver hooks (psycopg, asyncpg, redis) share.

>>> wrap_method(SomeClass, "execute", make_wrapper)     # idempotent              # doctest: +SKIP
>>> unwrap_method(SomeClass, "execute")                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["unwrap_method", "wrap_method"]

_ORIGINAL = "__obsbox_original__"
Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


def wrap_method(cls: type, name: str, wrap: Wrapper) -> None:
    """Replace `cls.name` (its own, not an inherited one) by `wrap(original)`, unless it is wrapped already."""
    current = cls.__dict__.get(name)
    if current is None or hasattr(current, _ORIGINAL):
        return
    wrapper = wrap(current)
    setattr(wrapper, _ORIGINAL, current)
    setattr(cls, name, wrapper)


def unwrap_method(cls: type, name: str) -> None:
    """Put the original method back, if `wrap_method` replaced it."""
    original = getattr(cls.__dict__.get(name), _ORIGINAL, None)
    if original is not None:
        setattr(cls, name, original)
