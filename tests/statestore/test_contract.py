"""One contract, both stores: the in-process store always, Redis when configured (always in CI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from statestore import LockNotAcquired, StateStore
from tests.support.stores import store_for_tests


@pytest.fixture(params=["in-process", "redis"])
async def any_store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    """Both stores (tests/support/stores.py)."""
    async for store in store_for_tests(request.param, "contract"):
        yield store


async def test_get_set_delete(any_store: StateStore) -> None:
    assert await any_store.get("a") is None
    assert await any_store.set("a", b"1")
    assert await any_store.get("a") == b"1"
    assert await any_store.delete("a") == 1
    assert await any_store.get("a") is None


async def test_set_only_if_absent(any_store: StateStore) -> None:
    assert await any_store.set("k", b"first", only_if_absent=True)
    assert not await any_store.set("k", b"second", only_if_absent=True)
    assert await any_store.get("k") == b"first"


async def test_ttl_expires(any_store: StateStore) -> None:
    await any_store.set("t", b"x", ttl=0.15)
    remaining = await any_store.ttl("t")
    assert remaining is not None and 0 < remaining <= 0.15
    await asyncio.sleep(0.25)
    assert await any_store.get("t") is None
    assert await any_store.ttl("t") is None


async def test_incr_sets_ttl_only_on_creation(any_store: StateStore) -> None:
    assert await any_store.incr("c", ttl=0.3) == 1
    await asyncio.sleep(0.1)
    assert await any_store.incr("c", 5, ttl=10) == 6
    remaining = await any_store.ttl("c")
    assert remaining is not None and remaining <= 0.3, "a fixed window must not be extended"
    await asyncio.sleep(0.3)
    assert await any_store.incr("c") == 1


async def test_incr_is_atomic_under_concurrency(any_store: StateStore) -> None:
    await asyncio.gather(*(any_store.incr("n") for _ in range(200)))
    assert await any_store.get("n") == b"200"


async def test_list_range_then_drop_keeps_order(any_store: StateStore) -> None:
    await any_store.list_push("l", b"1", b"2")
    await any_store.list_push("l", b"3")
    assert await any_store.list_len("l") == 3
    assert await any_store.list_range("l", 2) == [b"1", b"2"]
    await any_store.list_drop("l", 2)
    assert await any_store.list_range("l", 10) == [b"3"]
    await any_store.list_drop("l", 5)
    assert await any_store.list_len("l") == 0


async def test_lock_is_exclusive_and_released(any_store: StateStore) -> None:
    async with any_store.lock("job", ttl=5):
        with pytest.raises(LockNotAcquired):
            async with any_store.lock("job", ttl=5):
                pass
    async with any_store.lock("job", ttl=5):
        pass


async def test_expired_lock_is_not_released_by_old_holder(any_store: StateStore) -> None:
    with pytest.raises(LockNotAcquired):
        async with any_store.lock("slow", ttl=0.1):
            await asyncio.sleep(0.2)
            # Another process takes the lock after our TTL ran out...
            async with any_store.lock("slow", ttl=5):
                raise LockNotAcquired("marker")  # leave the inner block holding nothing
    # ...our exit must not have deleted theirs; here both exited, so the key is free.
    async with any_store.lock("slow", ttl=5):
        pass
