"""Pooled httpx.AsyncClients per event loop and upstream kind, with explicit timeouts.

Each kind gets a few small pools used in turn rather than one big one: httpcore's pool does
work proportional to its open connections on every request start and close, which made one
large pool the main CPU cost under hundreds of concurrent streams (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import itertools
import weakref

import httpx
from django.conf import settings

_Shards = tuple[list[httpx.AsyncClient], "itertools.count[int]"]
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Shards]] = weakref.WeakKeyDictionary()


def _new_client(per_shard: int) -> httpx.AsyncClient:
    t = settings.UPSTREAM_TIMEOUTS
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=t["connect"], read=t["read"], write=t["write"], pool=t["pool"]),
        limits=httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=30),
        # Clients never choose upstream URLs, and a redirect from an upstream is not followed.
        follow_redirects=False,
        trust_env=False,
    )


def http_client(kind: str) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    shards = per_loop.get(kind)
    if shards is None or any(c.is_closed for c in shards[0]):
        count = max(1, settings.UPSTREAM_POOL_SHARDS)
        per_shard = max(1, settings.UPSTREAM_MAX_CONNECTIONS // count)
        shards = ([_new_client(per_shard) for _ in range(count)], itertools.count())
        per_loop[kind] = shards
    clients, turn = shards
    return clients[next(turn) % len(clients)]


async def http_clients_close() -> None:
    loop = asyncio.get_running_loop()
    for clients, _ in _clients.pop(loop, {}).values():
        for client in clients:
            await client.aclose()
