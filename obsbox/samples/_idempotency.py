"""Idempotency keys for asyncio services: the first request with a key does the work; a replay gets the first
answer back instead of doing it again (and, in orders, instead of charging the customer twice).

>>> store = IdempotencyStore(max_entries=1000)
>>> async def place() -> tuple[int, dict]:
...     return 201, {"order_id": "o-1"}
>>> # (status, body), replayed = await store.run("key-1", place)      # doctest: +SKIP

A key belongs to one request: reusing it with a different request (another `fingerprint`) raises
`IdempotencyKeyReused` rather than answering with another order's result.
Answers below 500 are kept: they are final (a 409 "out of stock" stays the answer for that key). 5xx answers and
exceptions are not kept, so the client may retry with the same key. A replay that arrives while the first request
is still running waits for its answer rather than starting a second charge. Memory is bounded: past
`max_entries`, the oldest answers are forgotten.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

Answer = tuple[int, dict[str, Any]]


class IdempotencyKeyReused(ValueError):
    """The key came with a different request than the one it was first used for."""


class IdempotencyStore:
    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._done: OrderedDict[str, tuple[str, Answer]] = OrderedDict()  # key → (fingerprint, answer)
        self._running: dict[str, tuple[str, asyncio.Future[Answer]]] = {}

    def __len__(self) -> int:
        return len(self._done)

    async def run(self, key: str, work: Callable[[], Awaitable[Answer]], *, fingerprint: str = "") -> tuple[
            Answer, bool]:
        """The answer for `key` and whether it was replayed (True) or computed now (False)."""
        known = self._done.get(key) or self._running.get(key)
        if known is not None and known[0] != fingerprint:
            raise IdempotencyKeyReused(key)
        if key in self._done:
            return self._done[key][1], True
        if key in self._running:
            # shield: a replay that gives up must not cancel the first request's work
            return await asyncio.shield(self._running[key][1]), True
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._running[key] = (fingerprint, future)
        try:
            answer = await work()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark it retrieved: nobody may be waiting
            raise
        else:
            future.set_result(answer)
            if answer[0] < 500:
                self._remember(key, fingerprint, answer)
            return answer, False
        finally:
            del self._running[key]

    def _remember(self, key: str, fingerprint: str, answer: Answer) -> None:
        self._done[key] = (fingerprint, answer)
        while len(self._done) > self._max:
            self._done.popitem(last=False)
