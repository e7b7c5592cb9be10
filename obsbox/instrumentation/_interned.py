"""A bounded table of values built once from their key and shared from then on.

>>> names = Interned(lambda key: f"{key[0]} {key[1]}")
>>> names[("GET", "/items/{id}")]
'GET /items/{id}'

The request path keeps attribute dicts, span names and parsed Host headers in these: they repeat across requests,
so each is built once. A known key costs one plain dict lookup (the build runs only from `__missing__`, on a miss),
which keeps the hit as cheap as a hand-written cache. Keys partly come from requests, so a full table starts over
instead of growing without bound, and tables of values of any size (attributes, paths) keep only small ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Interned(dict[K, V]):
    """`table[key]` returns the value built for `key`, building it with `build(key)` the first time."""

    __slots__ = ("_build", "_limit", "_size", "_max_size")

    def __init__(self, build: Callable[[K], V], *, limit: int = 4096, size: Callable[[V], int] | None = None,
                 max_size: int = 0) -> None:
        super().__init__()
        self._build = build
        self._limit = limit
        # With `size`, a value larger than `max_size` is built and returned but not kept: the table's memory is
        # bounded in bytes (limit × max_size), whatever the application puts in an attribute or a path.
        self._size = size
        self._max_size = max_size

    def __missing__(self, key: K) -> V:
        value = self._build(key)
        if self._size is not None and self._size(value) > self._max_size:
            return value
        if len(self) >= self._limit:
            self.clear()
        self[key] = value
        return value
