"""Key limits enforced on the request path, in the client's own dialect."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from accounts.models import ClientKey
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    setup = seed(live_proxy.url, fake_openai)
    ClientKey.objects.filter(name="dev").update(requests_per_minute=20)
    return setup


async def test_50_concurrent_requests_on_a_20_per_minute_key(proxy: ProxySetup) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=20) as client:
        responses = await asyncio.gather(
            *(client.post(proxy.v1 + "/chat/completions", json=body, headers=proxy.headers()) for _ in range(50))
        )
        anthropic_style = await client.post(
            proxy.url + "/v1/messages",
            json={"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
            headers={"x-api-key": proxy.key, "anthropic-version": "2023-06-01"},
        )
    assert Counter(r.status_code for r in responses) == {200: 20, 429: 30}
    limited = next(r for r in responses if r.status_code == 429)
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert limited.json()["error"]["code"] == "key_limit_exceeded"
    assert anthropic_style.status_code == 429 and anthropic_style.json()["error"]["type"] == "rate_limit_error"
    assert len(proxy.fake.requests) == 20, "over-limit requests never reach an upstream"
    rows = await usage_rows(51)
    assert Counter(r.outcome for r in rows) == {"ok": 20, "rejected": 31}
