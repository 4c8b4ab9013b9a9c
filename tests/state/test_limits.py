"""Per-key limits (state.limits) on both stores: exact admission under concurrency."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from django.conf import settings

from accounts.selectors import KeyInfo
from state.limits import LimitExceeded, Reservation, estimate_tokens, limits_reserve, limits_settle
from statestore import StateStore
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


def _key(**limits: object) -> KeyInfo:
    if "budget_tokens" in limits:
        limits["budgets"] = ((limits.pop("budget_tokens"), limits.pop("budget_period", "month")),)
    return KeyInfo(
        id=7, name="dev", prefix="sk-team-abc", enabled=True, expires_at=None, allowed_models=frozenset(), **limits
    )  # type: ignore[arg-type]


async def _try(store: StateStore, key: KeyInfo, tokens: int) -> Reservation | LimitExceeded:
    try:
        return await limits_reserve(store, key=key, estimated_tokens=tokens)
    except LimitExceeded as exc:
        return exc


async def test_fifty_concurrent_requests_on_twenty_per_minute_admit_exactly_twenty(kv: StateStore) -> None:
    key = _key(requests_per_minute=20)
    results = await asyncio.gather(*(_try(kv, key, 10) for _ in range(50)))
    passed = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(passed) == 20 and len(refused) == 30
    assert {r.which for r in refused} == {"requests_per_minute"}
    assert all(0 < r.retry_after <= 60 for r in refused)


async def test_token_budget_under_concurrency_never_overshoots_more_than_one_reservation(
    kv: StateStore,
) -> None:
    # given a daily budget of 10 000 tokens and 60 concurrent requests estimated at 700 each
    key = _key(tokens_per_day=10_000)
    estimate = 700
    results = await asyncio.gather(*(_try(kv, key, estimate) for _ in range(60)))
    passed = [r for r in results if isinstance(r, Reservation)]
    # then reservations alone never exceed the budget
    assert len(passed) == 10_000 // estimate
    # when every admitted request really used somewhat more than its estimate (a bad estimate)
    # except that the sum stays within one reservation of the budget
    await asyncio.gather(*(limits_settle(kv, r, actual_tokens=estimate + 40) for r in passed))
    counter = passed[0].token_counters[0]
    used = int(await kv.get(counter) or 0)
    assert used == len(passed) * (estimate + 40)
    assert used <= 10_000 + estimate
    # and the next request is refused until the day ends
    with pytest.raises(LimitExceeded) as info:
        await limits_reserve(kv, key=key, estimated_tokens=1)
    assert info.value.which == "tokens_per_day"


async def test_settle_returns_unused_estimate(kv: StateStore) -> None:
    key = _key(budget_tokens=1000, budget_period="week")
    first = await limits_reserve(kv, key=key, estimated_tokens=900)
    with pytest.raises(LimitExceeded) as info:
        await limits_reserve(kv, key=key, estimated_tokens=200)
    assert info.value.which == "budget"
    await limits_settle(kv, first, actual_tokens=100)
    second = await limits_reserve(kv, key=key, estimated_tokens=800)
    assert second.token_counters == first.token_counters


async def test_unlimited_key_never_touches_the_store() -> None:
    class Broken:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"store.{name} used for an unlimited key")

    reservation = await limits_reserve(Broken(), key=_key(), estimated_tokens=50)  # type: ignore[arg-type]
    await limits_settle(Broken(), reservation, actual_tokens=10)  # type: ignore[arg-type]


class _DownStore:
    async def counters_reserve(self, limits: object) -> None:
        raise ConnectionError("redis down")

    async def counters_adjust(self, deltas: object) -> None:
        raise ConnectionError("redis down")


async def test_store_down_fails_open_by_default() -> None:
    reservation = await limits_reserve(_DownStore(), key=_key(requests_per_minute=1), estimated_tokens=5)  # type: ignore[arg-type]
    assert reservation.degraded
    await limits_settle(_DownStore(), reservation, actual_tokens=10)  # type: ignore[arg-type]


async def test_store_down_fails_closed_when_configured(settings: object) -> None:
    settings.PROXY_LIMITS_FAIL_CLOSED = True  # type: ignore[attr-defined]
    with pytest.raises(LimitExceeded) as info:
        await limits_reserve(_DownStore(), key=_key(tokens_per_day=5), estimated_tokens=1)  # type: ignore[arg-type]
    assert info.value.which == "unavailable"


async def test_budget_periods_are_utc_calendar_windows(kv: StateStore) -> None:
    key = _key(budget_tokens=10, budget_period="month")
    jan = await limits_reserve(kv, key=key, estimated_tokens=10, now=datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
    feb = await limits_reserve(kv, key=key, estimated_tokens=10, now=datetime(2026, 2, 1, 0, 1, tzinfo=UTC))
    assert jan.token_counters != feb.token_counters


def test_estimate_uses_output_cap() -> None:
    assert estimate_tokens(400, {"max_tokens": 50}) == 150
    assert estimate_tokens(0, {}) == 1024
