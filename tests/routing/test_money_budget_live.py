"""Money budgets and token limits on the request path, through the live proxy (both stores in CI)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from accounts.models import ClientKey
from pricing.models import MoneyBudget, PriceMode, PriceRule
from pricing.services import money_budget_save, price_rule_save
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BODY = {"model": "gpt-4o-mini", "max_tokens": 40, "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


async def test_a_200_tokens_a_day_key_serves_its_first_requests(proxy: ProxySetup) -> None:
    # issue 15 #7: the estimate (prompt + 32k assumed output) is larger than the whole limit
    await _update_key(tokens_per_day=200)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count to thirty " * 10}]}
    statuses = []
    async with httpx.AsyncClient(timeout=20) as client:
        for _ in range(40):
            r = await client.post(proxy.v1 + "/chat/completions", json=body, headers=proxy.headers())
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
    assert statuses[0] == 200 and statuses.count(200) >= 2
    assert statuses[-1] == 429 and "tokens per day" in r.json()["error"]["message"]
    rows = await usage_rows(len(statuses))
    used = sum(x.input_tokens + x.output_tokens for x in rows if x.outcome == "ok")
    last = rows[-2]  # the last served request
    assert used - (last.input_tokens + last.output_tokens) < 200 <= used  # stopped at the limit


async def test_money_budget_stops_at_its_limit_under_50_concurrent_clients(proxy: ProxySetup) -> None:
    # Make each request cost real money: $1,100 per 1M tokens in and out (a custom price).
    await _sync(
        price_rule_save,
        PriceRule(model="gpt-4o-mini", mode=PriceMode.CUSTOM, input_per_mtok=Decimal(1100), output_per_mtok=1100),
    )
    key_id = await _sync(lambda: ClientKey.objects.get(name="dev").id)
    await _sync(money_budget_save, MoneyBudget(key_id=key_id, usd=Decimal("0.50"), period="day"))
    outcomes: list[int] = []

    async def client(c: httpx.AsyncClient) -> None:
        while True:
            r = await c.post(proxy.v1 + "/chat/completions", json=BODY, headers=proxy.headers())
            outcomes.append(r.status_code)
            if r.status_code == 200:
                continue
            assert r.status_code == 429, r.text
            if float(r.headers["retry-after"]) <= 2:  # busy: others' reservations hold the budget
                assert "in flight" in r.json()["error"]["message"]
                await asyncio.sleep(0.05)
                continue
            assert "money budget" in r.json()["error"]["message"]
            return

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=60)) as c:
        await asyncio.wait_for(asyncio.gather(*(client(c) for _ in range(50))), timeout=120)
    served = outcomes.count(200)
    rows = [r for r in await usage_rows(len(outcomes), timeout=15) if r.outcome == "ok"]
    assert len(rows) == served > 10
    costs = [r.cost_nanousd or 0 for r in rows]
    assert all(r.price_source == "rule" for r in rows)
    spent, budget = sum(costs), 500_000_000
    # it stopped at its limit, overshooting by at most one request's cost
    print(f"money budget $0.50: {served} served of {len(outcomes)} sent, spent {spent} nano-USD, max {max(costs)}")
    assert budget <= spent <= budget + max(costs), (spent, served)


async def _update_key(**fields: Any) -> None:
    from accounts.services import cache_version_bump

    await _sync(lambda: ClientKey.objects.filter(name="dev").update(**fields))
    await _sync(cache_version_bump)


async def _sync(fn: Any, *args: Any) -> Any:
    from infra.db import db_call

    return await db_call(fn, *args)
