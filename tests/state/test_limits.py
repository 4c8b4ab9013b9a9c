"""Per-key limits (state.limits) on both stores: exact admission under concurrency."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from accounts.selectors import KeyInfo
from state.limits import LimitExceeded, MoneyLimit, Reservation, estimate_tokens, limits_reserve, limits_settle
from statestore import StateStore, held_key
from tests.support.stores import store_for_tests


@pytest.fixture(params=["in-process", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    """Both stores (tests/support/stores.py)."""
    async for store in store_for_tests(request.param, "limits"):
        yield store


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


async def test_token_budget_under_concurrency_stops_with_at_most_one_requests_overshoot(
    kv: StateStore,
) -> None:
    # given a daily budget of 10 000 tokens and 60 concurrent requests that may use 700 each
    key = _key(tokens_per_day=10_000)
    most = 700
    results = await asyncio.gather(*(_try(kv, key, most) for _ in range(60)))
    passed = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    # then 15 are admitted (the 15th on the last 200 tokens of room); the others are told the
    # budget is busy with requests in flight (a short retry), not exhausted until the day ends
    assert len(passed) == 15 and len(refused) == 45
    assert all(r.busy and r.retry_after <= 2 for r in refused)
    # when every admitted request used all it could
    await asyncio.gather(*(limits_settle(kv, r, actual_tokens=most) for r in passed))
    counter = passed[0].token_counters[0]
    used = int(await kv.get(counter) or 0)
    # then use exceeds the budget by at most one request (the one admitted on the last room)
    assert used == 15 * most and 10_000 < used <= 10_000 + most
    # and the next request is refused until the day ends: the budget is spent, not busy
    with pytest.raises(LimitExceeded) as info:
        await limits_reserve(kv, key=key, estimated_tokens=1)
    assert info.value.which == "tokens_per_day" and not info.value.busy and info.value.retry_after > 2


async def test_estimate_never_refuses_a_request_while_real_headroom_remains(kv: StateStore) -> None:
    # issue 15 #7: a 200 tokens/day key refused its first request because 1,024 output
    # tokens were assumed. Now any room admits a request; its real use is settled after.
    key = _key(tokens_per_day=200)
    for _ in range(3):
        r = await limits_reserve(kv, key=key, estimated_tokens=estimate_tokens(300, {}))
        await limits_settle(kv, r, actual_tokens=60)
    assert int(await kv.get(r.token_counters[0]) or 0) == 180
    assert int(await kv.get(held_key(r.token_counters[0])) or 0) == 0
    r = await limits_reserve(kv, key=key, estimated_tokens=estimate_tokens(300, {}))  # 20 left: admitted
    await limits_settle(kv, r, actual_tokens=60)
    with pytest.raises(LimitExceeded):  # 240 used: spent
        await limits_reserve(kv, key=key, estimated_tokens=1)


async def test_settle_returns_unused_estimate(kv: StateStore) -> None:
    key = _key(budget_tokens=1000, budget_period="week")
    first = await limits_reserve(kv, key=key, estimated_tokens=1000)
    with pytest.raises(LimitExceeded) as info:
        await limits_reserve(kv, key=key, estimated_tokens=200)
    assert info.value.which == "budget" and info.value.busy
    await limits_settle(kv, first, actual_tokens=100)
    second = await limits_reserve(kv, key=key, estimated_tokens=800)
    assert second.token_counters == first.token_counters


def _money(usd_cents: int, scope: str = "key", period: str = "month") -> MoneyLimit:
    return MoneyLimit(scope, 3 if scope == "team" else 7, usd_cents * 10_000_000, period)  # type: ignore[arg-type]


async def test_money_budget_under_50_concurrent_requests_stops_at_its_limit(kv: StateStore) -> None:
    """50 clients keep sending requests until the budget says it is spent (not busy)."""
    budget = _money(100)  # $1.00
    key = _key()
    most, rnd = 30_000_000, random.Random(5)  # a request costs at most $0.03 ...
    spent: list[int] = []

    async def client() -> None:
        while True:
            try:
                r = await limits_reserve(kv, key=key, estimated_tokens=0, estimated_cost_nano=most, money=[budget])
            except LimitExceeded as exc:
                if exc.busy:
                    await asyncio.sleep(0.001)
                    continue
                assert exc.which == "money_budget"
                return
            await asyncio.sleep(rnd.random() / 1000)
            cost = rnd.randrange(10_000_000, most + 1)  # ... and really $0.01-0.03
            spent.append(cost)
            await limits_settle(kv, r, actual_tokens=0, actual_cost_nano=cost)

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(50))), timeout=60)
    counter = f"lim:{{7}}:usd:month:{datetime.now(UTC):%Y%m}"
    total = int(await kv.get(counter) or 0)
    assert total == sum(spent)
    # stopped at the limit, overshooting by at most one request's cost
    assert budget.nano <= total <= budget.nano + most, (total, len(spent))
    assert int(await kv.get(held_key(counter)) or 0) == 0


async def test_team_money_budget_is_shared_by_the_teams_keys(kv: StateStore) -> None:
    team = _money(10, scope="team")  # $0.10 for the whole team
    a = KeyInfo(id=1, name="a", prefix="p", enabled=True, expires_at=None, allowed_models=frozenset(), team_id=3)
    b = KeyInfo(id=2, name="b", prefix="p", enabled=True, expires_at=None, allowed_models=frozenset(), team_id=3)
    r = await limits_reserve(kv, key=a, estimated_tokens=0, estimated_cost_nano=80_000_000, money=[team])
    await limits_settle(kv, r, actual_tokens=0, actual_cost_nano=80_000_000)
    r = await limits_reserve(kv, key=b, estimated_tokens=0, estimated_cost_nano=80_000_000, money=[team])
    assert r.charges[0][0].startswith("lim:{t3}:usd:month:")  # b is admitted on what a left
    await limits_settle(kv, r, actual_tokens=0, actual_cost_nano=30_000_000)
    with pytest.raises(LimitExceeded) as info:
        await limits_reserve(kv, key=a, estimated_tokens=0, estimated_cost_nano=1, money=[team])
    assert info.value.which == "team_money_budget" and not info.value.busy


async def test_unknown_cost_keeps_the_money_charge(kv: StateStore) -> None:
    r = await limits_reserve(kv, key=_key(), estimated_tokens=0, estimated_cost_nano=5_000, money=[_money(1)])
    await limits_settle(kv, r, actual_tokens=0, actual_cost_nano=None)
    counter = r.charges[0][0]
    assert int(await kv.get(counter) or 0) == 5_000 and int(await kv.get(held_key(counter)) or 0) == 0


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


def test_estimate_is_the_most_a_request_can_use() -> None:
    # a prompt has at most as many tokens as bytes; the output is the cap, else 32k
    assert estimate_tokens(400, {"max_tokens": 50}) == 450
    assert estimate_tokens(0, {}) == 32_768
    assert estimate_tokens(0, {"max_output_tokens": 10**30}) == 100_000_000
