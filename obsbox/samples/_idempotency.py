"""Idempotency keys for asyncio services: the first request with a key does the work; a replay gets the first
answer back instead of doing it again (and, in orders, instead of charging the customer twice).

>>> store = IdempotencyStore(max_entries=1000)
>>> async def place() -> tuple[int, dict]:
...     return 201, {"order_id": "o-1"}
>>> # (status, body), replayed = await store.run("key-1", place)      # doctest: +SKIP

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


class IdempotencyStore:
    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._done: OrderedDict[str, Answer] = OrderedDict()
        self._running: dict[str, asyncio.Future[Answer]] = {}

    def __len__(self) -> int:
        return len(self._done)

    async def run(self, key: str, work: Callable[[], Awaitable[Answer]]) -> tuple[Answer, bool]:
        """The answer for `key` and whether it was replayed (True) or computed now (False)."""
        if key in self._done:
            return self._done[key], True
        if key in self._running:
            # shield: a replay that gives up must not cancel the first request's work
            return await asyncio.shield(self._running[key]), True
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._running[key] = future
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
                self._remember(key, answer)
            return answer, False
        finally:
            del self._running[key]

    def _remember(self, key: str, answer: Answer) -> None:
        self._done[key] = answer
        while len(self._done) > self._max:
            self._done.popitem(last=False)
