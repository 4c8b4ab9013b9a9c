"""State store (Redis) unreachable or restarted under traffic: requests keep being served and
no usage record is lost (docs/reliability.md, "store down")."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from audit.services import usage_local_depth
from tests.fakes.base import Fault
from tests.reliability.conftest import closed_port, use_store_url
from tests.reliability.tcp_proxy import CuttableProxy
from tests.support.proxy import ProxySetup, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _chat(stream: bool) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def _one(client: httpx.AsyncClient, proxy: ProxySetup, i: int) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    r = await client.post(proxy.v1 + "/chat/completions", json=_chat(i % 2 == 0), headers=proxy.headers())
    return r.status_code, r.content, time.perf_counter() - started


async def test_store_unreachable_requests_served_usage_kept(proxy: ProxySetup, settings: Any) -> None:
    # given a proxy whose state store points at a port nothing listens on
    use_store_url(f"redis://127.0.0.1:{closed_port()}/0", settings)
    # and one upstream account that answers 429 once (its cooldown cannot be written)
    proxy.fake.faults.push(Fault.http(429, headers={"retry-after": "30"}).where(times=1))
    # when 30 requests (stream and not) go through
    async with httpx.AsyncClient(timeout=15) as client:
        results = [await _one(client, proxy, i) for i in range(30)]
    # then every request is served (fail open: no cooldowns, static order, no limits state)
    assert [s for s, _, _ in results] == [200] * 30, [c[:200] for s, c, _ in results if s != 200]
    streams = [c for i, (_, c, _) in enumerate(results) if i % 2 == 0]
    assert all(c.rstrip().endswith(b"data: [DONE]") for c in streams)
    # and fast: the breaker answers "down" at once instead of a connect timeout per call
    assert max(t for _, _, t in results) < 2.0
    # and every usage record reaches the database (fallback buffer -> direct insert)
    rows = await usage_rows(30, timeout=10)
    assert len(rows) == 30 and len({r.request_id for r in rows}) == 30
    assert usage_local_depth() == (0, 0)
    assert sum(r.attempts for r in rows) == 31  # the 429 failed over invisibly


async def test_redis_cut_and_restored_under_traffic(proxy: ProxySetup, redis_cut: CuttableProxy) -> None:
    # given concurrent traffic through a proxy whose Redis sits behind a TCP forwarder
    stop = asyncio.Event()
    results: list[tuple[int, bytes, float]] = []

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        i = n
        while not stop.is_set():
            results.append(await _one(client, proxy, i))
            i += 1

    async with httpx.AsyncClient(timeout=15) as client:
        tasks = [asyncio.create_task(worker(client, n)) for n in range(4)]
        await asyncio.sleep(0.7)
        # when Redis goes away mid-traffic (open connections reset, new ones refused) ...
        redis_cut.cut()
        during = len(results)
        await asyncio.sleep(1.5)
        served_while_down = len(results) - during
        # ... and comes back
        redis_cut.restore()
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*tasks)
    # then no request failed, traffic kept flowing while Redis was down
    bad = [(s, c[:200]) for s, c, _ in results if s != 200]
    assert not bad, bad
    print(f"requests={len(results)} served_while_redis_down={served_while_down}")
    assert served_while_down > 10
    # and usage rows match requests exactly once flushed (local fallback + shared buffer)
    rows = await usage_rows(len(results), timeout=15)
    assert len(rows) == len(results) == len({r.request_id for r in rows})
    assert usage_local_depth()[1] == 0
