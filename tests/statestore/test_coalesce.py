"""Coalescing: calls made while one is in flight share one round trip; each caller gets its own
answer, failures reach every caller of the batch, nothing a caller started is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis.exceptions

from statestore import StoreUnavailable
from statestore.coalesce import Coalescer
from tests.support.stores import store_for_tests


class _Upstream:
    """A send() that records each batch and answers after `gate` opens."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_batch = -1  # the index of the batch that fails

    async def send(self, args: Sequence[int]) -> list[int]:
        self.batches.append(list(args))
        await self.gate.wait()
        if len(self.batches) - 1 == self.fail_batch:
            raise ConnectionError("down")
        return [a * 10 for a in args]


async def test_calls_made_while_one_is_in_flight_go_out_together() -> None:
    up = _Upstream()
    c: Coalescer[int, int] = Coalescer(up.send)
    up.gate.clear()
    first = asyncio.create_task(c.call(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(c.call(i)) for i in range(1, 21)]
    await asyncio.sleep(0)
    up.gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [i * 10 for i in range(1, 21)]
    assert up.batches == [[0], list(range(1, 21))]


async def test_at_low_load_every_call_goes_out_at_once_on_its_own() -> None:
    up = _Upstream()
    c: Coalescer[int, int] = Coalescer(up.send)
    for i in range(5):
        assert await c.call(i) == i * 10
    assert up.batches == [[0], [1], [2], [3], [4]]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_call_works() -> None:
    up = _Upstream()
    up.fail_batch = 1
    c: Coalescer[int, int] = Coalescer(up.send)
    up.gate.clear()
    first = asyncio.create_task(c.call(0))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(c.call(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    up.gate.set()
    assert await first == 0
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3
    assert await c.call(9) == 90
    assert up.batches == [[0], [1, 2, 3], [9]]


async def test_a_cancelled_caller_does_not_take_back_what_it_queued() -> None:
    up = _Upstream()
    c: Coalescer[int, int] = Coalescer(up.send)
    up.gate.clear()
    first = asyncio.create_task(c.call(0))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(c.call(1))
    staying = asyncio.create_task(c.call(2))
    await asyncio.sleep(0)
    leaving.cancel()
    up.gate.set()
    assert await first == 0 and await staying == 20
    assert leaving.cancelled()
    assert up.batches == [[0], [1, 2]]  # its argument still went out (a usage record is still pushed)


async def test_a_cancelled_sender_hands_the_queue_on() -> None:
    up = _Upstream()
    c: Coalescer[int, int] = Coalescer(up.send)
    up.gate.clear()
    first = asyncio.create_task(c.call(0))
    await asyncio.sleep(0)
    queued = asyncio.create_task(c.call(1))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    up.gate.set()
    assert await asyncio.wait_for(queued, 2) == 10


# --- the Redis store -------------------------------------------------------------------------


@pytest.fixture
async def redis_store() -> AsyncIterator[Any]:
    async for store in store_for_tests("redis", "coalesce"):
        yield store


def _count(store: Any, name: str) -> list[int]:
    calls: list[int] = []
    method = getattr(store._redis, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await method(*args, **kwargs)

    setattr(store._redis, name, counted)
    return calls


async def test_concurrent_reads_and_pushes_share_round_trips_and_each_gets_its_answer(redis_store: Any) -> None:
    store = redis_store
    for i in range(100):
        await store.set(f"k{i}", str(i).encode())
    mgets, rpushes = _count(store, "mget"), _count(store, "rpush")

    async def request(i: int) -> list[bytes | None]:
        values = await store.get_many([f"k{i}", "missing", f"k{(i + 1) % 100}"])
        await store.list_push("records", f"r{i}a".encode(), f"r{i}b".encode())
        return values

    answers = await asyncio.gather(*(request(i) for i in range(100)))
    assert answers == [[str(i).encode(), None, str((i + 1) % 100).encode()] for i in range(100)]
    assert len(mgets) < 20 and len(rpushes) < 20  # 100 of each without coalescing
    pushed = await store.list_range("records", 1000)
    assert sorted(pushed) == sorted(f"r{i}{s}".encode() for i in range(100) for s in "ab")
    for i in range(100):  # each caller's values stay in its order
        assert pushed.index(f"r{i}a".encode()) + 1 == pushed.index(f"r{i}b".encode())


async def test_pushes_to_two_lists_in_one_batch_land_in_their_lists(redis_store: Any) -> None:
    store = redis_store
    await asyncio.gather(*(store.list_push("a" if i % 2 else "b", str(i).encode()) for i in range(40)))
    assert sorted(await store.list_range("a", 100)) == sorted(str(i).encode() for i in range(40) if i % 2)
    assert sorted(await store.list_range("b", 100)) == sorted(str(i).encode() for i in range(40) if not i % 2)


async def test_redis_down_fails_every_coalesced_caller_with_store_unavailable() -> None:
    from statestore.redis import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        results = await asyncio.gather(
            *(store.list_push("records", b"x") for _ in range(10)),
            *(store.get_many(["a"]) for _ in range(10)),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
    finally:
        await store.aclose()


async def test_callers_queued_behind_a_failure_fail_at_the_breaker_without_a_second_attempt(redis_store: Any) -> None:
    store = redis_store
    attempts: list[str] = []

    async def down(*args: Any, **kwargs: Any) -> Any:
        attempts.append("sent")
        await asyncio.sleep(0.01)  # in flight long enough for the others to queue behind it
        raise redis.exceptions.ConnectionError("link down (test)")

    store._redis.mget = store._redis.rpush = down
    results = await asyncio.gather(
        *(store.get_many(["a"]) for _ in range(10)),
        *(store.list_push("records", b"x") for _ in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    # one MGET and one RPUSH met the dead link and opened the breaker; the queued batches
    # failed at once, as their callers would have had they sent their own command (a timing
    # out Redis would otherwise hold them for a second socket timeout)
    assert attempts == ["sent", "sent"]
