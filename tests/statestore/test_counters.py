"""Contract for the all-or-nothing counter reservation, on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from statestore import CounterLimit, StateStore, held_key
from tests.support.stores import store_for_tests


@pytest.fixture(params=["in-process", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    """Both stores (tests/support/stores.py)."""
    async for store in store_for_tests(request.param, "counters"):
        yield store


async def test_reserve_charges_every_counter_or_none(kv: StateStore) -> None:
    # given two counters, the second full
    assert (await kv.counters_reserve([CounterLimit("b", 10, 10, 60)])).over is None
    # when a reservation includes the full one
    result = await kv.counters_reserve([CounterLimit("a", 1, 5, 60), CounterLimit("b", 2, 10, 60)])
    # then it names the second and charged neither
    assert (result.over, result.busy) == (1, False)
    assert await kv.get("a") is None
    assert await kv.get("b") == b"10"


async def test_reserve_admits_while_any_room_is_left(kv: StateStore) -> None:
    # given 3 of 10 used
    await kv.counters_reserve([CounterLimit("c", 3, 10, 60)])
    # when a request may use up to 50 (more than the room left)
    result = await kv.counters_reserve([CounterLimit("c", 50, 10, 60), CounterLimit("d", 4, 100, 60)])
    # then it is admitted (an estimate never refuses while room remains), charged in full
    assert result.over is None
    assert (await kv.get("c"), await kv.get("d")) == (b"53", b"4")
    # and nothing more is admitted until settlement brings the counter back under the limit
    assert (await kv.counters_reserve([CounterLimit("c", 1, 10, 60)])).over == 0


async def test_held_charges_make_a_refusal_busy_until_settled(kv: StateStore) -> None:
    first = await kv.counters_reserve([CounterLimit("m", 80, 100, 60, hold=True)])
    second = await kv.counters_reserve([CounterLimit("m", 80, 100, 60, hold=True)])
    assert first.over is None and second.over is None
    # the counter is full of charges of requests still in flight: busy, not spent
    refused = await kv.counters_reserve([CounterLimit("m", 1, 100, 60, hold=True)])
    assert (refused.over, refused.busy) == (0, True)
    # both settle for less than they were charged, but together more than the limit
    await kv.counters_adjust([("m", -20), (held_key("m"), -80), ("m", -30), (held_key("m"), -80)])
    refused = await kv.counters_reserve([CounterLimit("m", 1, 100, 60, hold=True)])
    assert (refused.over, refused.busy) == (0, False)
    assert await kv.get("m") == b"110" and await kv.get(held_key("m")) == b"0"


async def test_reserve_window_is_fixed_from_creation(kv: StateStore) -> None:
    assert (await kv.counters_reserve([CounterLimit("w", 1, 1, 0.2)])).over is None
    assert (await kv.counters_reserve([CounterLimit("w", 1, 1, 60)])).over == 0
    remaining = await kv.ttl("w")
    assert remaining is not None and remaining <= 0.2, "a refused reservation must not extend the window"
    await asyncio.sleep(0.3)
    assert (await kv.counters_reserve([CounterLimit("w", 1, 1, 60)])).over is None


async def test_reserve_never_admits_past_a_full_counter_under_concurrency(kv: StateStore) -> None:
    results = await asyncio.gather(*(kv.counters_reserve([CounterLimit("c", 3, 100, 60)]) for _ in range(100)))
    # 33 fit; the 34th is admitted on the last unit of room; then the counter is full
    assert sum(r.over is None for r in results) == 34
    assert await kv.get("c") == b"102"


async def test_adjust_touches_only_live_counters(kv: StateStore) -> None:
    await kv.counters_reserve([CounterLimit("live", 10, 100, 60)])
    await kv.counters_adjust([("live", -4), ("gone", 7)])
    assert await kv.get("live") == b"6"
    assert await kv.get("gone") is None, "settling must not open a new window"


async def test_adjust_then_push_settles_live_counters_and_buffers(kv: StateStore) -> None:
    # given a live counter and one whose window ended
    await kv.counters_reserve([CounterLimit("live2", 10, 100, 60)])
    # when a settlement goes with a list push
    await kv.counters_adjust_then_push([("live2", -3), ("gone2", 5)], "buf", b"r1", b"r2")
    # then the live counter is adjusted, the dead one stays closed, and the items are queued
    assert await kv.get("live2") == b"7"
    assert await kv.get("gone2") is None, "settling must not open a new window"
    assert await kv.list_range("buf", 10) == [b"r1", b"r2"]
    # and without counters it is a plain push
    await kv.counters_adjust_then_push([], "buf", b"r3")
    assert await kv.list_range("buf", 10) == [b"r1", b"r2", b"r3"]
