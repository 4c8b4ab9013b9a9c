"""Contract for the all-or-nothing counter reservation, on both stores."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from django.conf import settings

from statestore import CounterLimit, StateStore
from statestore.memory import InProcessStore


@pytest.fixture(params=["in-process", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    """Both stores, as in tests/statestore/test_contract.py (Redis required when CI=true)."""
    if request.param == "in-process":
        yield InProcessStore()
        return
    url = settings.REDIS_URL or os.environ.get("TEST_REDIS_URL", "")
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: the Redis store must be tested (set REDIS_URL)")
        pytest.skip("no REDIS_URL: Redis tests run in CI")
    from statestore.redis import RedisStore

    store = RedisStore(url, prefix=f"llmproxy-limits-{os.getpid()}:")
    await store.flush_prefix()
    yield store
    await store.flush_prefix()
    await store.aclose()


async def test_reserve_charges_every_counter_or_none(kv: StateStore) -> None:
    # given two counters, the second nearly full
    assert await kv.counters_reserve([CounterLimit("b", 9, 10, 60)]) is None
    # when a reservation would overflow the second
    over = await kv.counters_reserve([CounterLimit("a", 1, 5, 60), CounterLimit("b", 2, 10, 60)])
    # then it names the second and charged neither
    assert over == 1
    assert await kv.get("a") is None
    assert await kv.get("b") == b"9"
    # and a fitting one charges both
    assert await kv.counters_reserve([CounterLimit("a", 1, 5, 60), CounterLimit("b", 1, 10, 60)]) is None
    assert (await kv.get("a"), await kv.get("b")) == (b"1", b"10")


async def test_reserve_window_is_fixed_from_creation(kv: StateStore) -> None:
    assert await kv.counters_reserve([CounterLimit("w", 1, 1, 0.2)]) is None
    assert await kv.counters_reserve([CounterLimit("w", 1, 1, 60)]) == 0
    remaining = await kv.ttl("w")
    assert remaining is not None and remaining <= 0.2, "a refused reservation must not extend the window"
    await asyncio.sleep(0.3)
    assert await kv.counters_reserve([CounterLimit("w", 1, 1, 60)]) is None


async def test_reserve_never_overshoots_under_concurrency(kv: StateStore) -> None:
    results = await asyncio.gather(*(kv.counters_reserve([CounterLimit("c", 3, 100, 60)]) for _ in range(100)))
    assert sum(r is None for r in results) == 33
    assert await kv.get("c") == b"99"


async def test_adjust_touches_only_live_counters(kv: StateStore) -> None:
    await kv.counters_reserve([CounterLimit("live", 10, 100, 60)])
    await kv.counters_adjust([("live", -4), ("gone", 7)])
    assert await kv.get("live") == b"6"
    assert await kv.get("gone") is None, "settling must not open a new window"
