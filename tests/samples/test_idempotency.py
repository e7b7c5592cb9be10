"""The idempotency store orders relies on to never charge a replayed order twice."""

from __future__ import annotations

import asyncio

import pytest

from obsbox.samples._idempotency import Answer, IdempotencyKeyReused, IdempotencyStore


def test_a_replay_gets_the_first_answer_without_doing_the_work_again() -> None:
    calls = 0

    async def place() -> Answer:
        nonlocal calls
        calls += 1
        return 201, {"order_id": f"o-{calls}"}

    async def main() -> None:
        store = IdempotencyStore()
        assert await store.run("k1", place) == ((201, {"order_id": "o-1"}), False)
        assert await store.run("k1", place) == ((201, {"order_id": "o-1"}), True)
        assert await store.run("k2", place) == ((201, {"order_id": "o-2"}), False)

    asyncio.run(main())
    assert calls == 2


def test_a_concurrent_replay_waits_for_the_first_request() -> None:
    calls = 0

    async def place() -> Answer:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 201, {"n": calls}

    async def main() -> list[tuple[Answer, bool]]:
        store = IdempotencyStore()
        return await asyncio.gather(*(store.run("same", place) for _ in range(5)))

    results = asyncio.run(main())
    assert calls == 1
    assert [replayed for _, replayed in results] == [False, True, True, True, True]
    assert all(answer == (201, {"n": 1}) for answer, _ in results)


def test_server_errors_and_exceptions_are_not_kept_so_the_client_may_retry() -> None:
    outcomes: list[Answer | Exception] = [(503, {"error": "busy"}), RuntimeError("boom"), (201, {"ok": True})]

    async def place() -> Answer:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def main() -> None:
        store = IdempotencyStore()
        assert await store.run("k", place) == ((503, {"error": "busy"}), False)
        with pytest.raises(RuntimeError):
            await store.run("k", place)
        assert await store.run("k", place) == ((201, {"ok": True}), False)
        assert await store.run("k", place) == ((201, {"ok": True}), True)

    asyncio.run(main())


def test_memory_is_bounded() -> None:
    async def main() -> IdempotencyStore:
        store = IdempotencyStore(max_entries=3)
        for i in range(10):
            await store.run(f"k{i}", lambda i=i: _answer(i))  # type: ignore[misc]
        return store

    async def _answer(i: int) -> Answer:
        return 200, {"i": i}

    store = asyncio.run(main())
    assert len(store) == 3

    async def replay_oldest() -> bool:
        _, replayed = await store.run("k0", lambda: _answer(99))
        return replayed

    assert asyncio.run(replay_oldest()) is False  # forgotten: evicted first


def test_a_key_reused_for_a_different_request_is_refused() -> None:
    async def place() -> Answer:
        return 201, {"order_id": "o-1"}

    async def main() -> None:
        store = IdempotencyStore()
        await store.run("k", place, fingerprint='{"sku":"tea-01"}')
        with pytest.raises(IdempotencyKeyReused):
            await store.run("k", place, fingerprint='{"sku":"mug-01"}')
        assert await store.run("k", place, fingerprint='{"sku":"tea-01"}') == ((201, {"order_id": "o-1"}), True)

    asyncio.run(main())
