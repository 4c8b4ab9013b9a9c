"""Issue 17 (minor): output already relayed before an upstream cut used to be recorded as
output_tokens=0. It is now counted from the relayed text (bytes / 4) and marked estimated."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    fake_openai.app.chunks = 20
    return seed(live_proxy.url, fake_openai)


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]


async def test_chat_stream_cut_counts_the_output_already_relayed(proxy: ProxySetup) -> None:
    proxy.fake.faults.push(Fault.cut(after=8))
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=body, headers=proxy.headers())
    relayed = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in _events(r.content) if e.get("choices")
    )
    assert relayed  # the client did get part of the answer
    [row] = await usage_rows(1)
    assert row.error_code == "upstream_stream_cut"
    assert row.output_tokens == (len(relayed.encode()) + 3) // 4 > 0
    assert row.usage_estimated is True


async def test_translated_stream_cut_counts_the_output_already_relayed(proxy: ProxySetup) -> None:
    proxy.fake.faults.push(Fault.cut(after=8))
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(
            proxy.v1 + "/messages", json=body, headers=proxy.headers(**{"anthropic-version": "2023-06-01"})
        )
    relayed = "".join(
        e["delta"].get("text") or "" for e in _events(r.content) if e.get("type") == "content_block_delta"
    )
    assert relayed
    [row] = await usage_rows(1)
    assert row.outcome == "upstream_error"
    # Counted from the upstream's deltas (what the client got, re-encoded): same text.
    assert row.output_tokens == (len(relayed.encode()) + 3) // 4 > 0
    assert row.usage_estimated is True
