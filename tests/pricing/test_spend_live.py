"""Requests through the proxy are priced from the library: the records match a hand calculation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.db.models import Sum

from audit.models import Granularity, UsageRollup
from audit.rollups import rollups_update
from infra.db import db_call
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# OpenAI's published gpt-4o-mini rates, USD per 1M tokens.
INPUT, CACHED, OUTPUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")


def _hand_nano(prompt: int, cached: int, output: int) -> int:
    usd = ((prompt - cached) * INPUT + cached * CACHED + output * OUTPUT) / 1_000_000
    return int(usd * 1_000_000_000)


@pytest.fixture
def setup(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


async def test_priced_requests_match_a_hand_calculation(setup: ProxySetup, fake_openai: Any) -> None:
    fake_openai.app.cached_tokens = 3
    fake_openai.app.reasoning_tokens = 7
    prompt = "one two three four five six seven eight nine ten " * 5
    async with httpx.AsyncClient(timeout=20) as client:
        for stream in (False, True):
            body: dict[str, Any] = {
                "model": "gpt-4o-mini",
                "stream": stream,
                "messages": [{"role": "user", "content": prompt}],
            }
            r = await client.post(setup.v1 + "/chat/completions", json=body, headers=setup.headers())
            assert r.status_code == 200
    rows = await usage_rows(2)
    assert len(rows) == 2
    for row in rows:
        # the fake reports cached tokens inside the prompt and reasoning inside the output
        assert row.cached_tokens == 3 and row.reasoning_tokens == 7 and row.input_tokens > 3
        assert row.price_source == "list"
        assert row.cost_nanousd == _hand_nano(row.input_tokens, row.cached_tokens, row.output_tokens)
    total = sum(r.cost_nanousd or 0 for r in rows)
    await db_call(rollups_update)
    for cube in (Granularity.DAY, Granularity.DAY_KEY, Granularity.HOUR_ACCOUNT_MODEL):
        summed = await db_call(
            lambda c=cube: UsageRollup.objects.filter(granularity=c).aggregate(s=Sum("cost_nanousd"))["s"]
        )
        assert summed == total
