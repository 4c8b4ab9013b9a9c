"""SingleFlight: concurrent misses share one load; failures and cancellations stay contained."""

from __future__ import annotations

import asyncio

import pytest

from infra.singleflight import SingleFlight


async def test_concurrent_callers_share_one_load() -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiters = [asyncio.create_task(flight.run("k", load)) for _ in range(100)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 100
    assert calls == 1


async def test_other_keys_load_separately_and_a_finished_load_is_not_reused() -> None:
    flight: SingleFlight[str] = SingleFlight()
    calls: list[str] = []

    async def load(name: str) -> str:
        calls.append(name)
        await asyncio.sleep(0)
        return name

    assert await asyncio.gather(flight.run("a", lambda: load("a")), flight.run("b", lambda: load("b"))) == ["a", "b"]
    assert await flight.run("a", lambda: load("a")) == "a"  # the cache decides freshness, not the flight
    assert calls == ["a", "b", "a"]


async def test_a_failed_load_fails_every_waiter_and_the_next_call_retries() -> None:
    flight: SingleFlight[int] = SingleFlight()
    attempts = 0

    async def load() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if attempts == 1:
            raise ConnectionError("database down")
        return 7

    results = await asyncio.gather(*(flight.run("k", load) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await flight.run("k", load) == 7
    assert attempts == 2


async def test_a_cancelled_waiter_does_not_cancel_the_load_for_the_others() -> None:
    flight: SingleFlight[int] = SingleFlight()
    release = asyncio.Event()

    async def load() -> int:
        await release.wait()
        return 1

    first = asyncio.create_task(flight.run("k", load))
    second = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == 1


def test_each_event_loop_has_its_own_loads() -> None:
    flight: SingleFlight[int] = SingleFlight()

    async def load() -> int:
        await asyncio.sleep(0)
        return 3

    # A task of a closed loop must never be awaited from another one.
    assert asyncio.run(flight.run("k", load)) == 3
    assert asyncio.run(flight.run("k", load)) == 3
