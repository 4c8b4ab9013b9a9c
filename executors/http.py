"""One pooled httpx.AsyncClient per event loop and upstream kind, with explicit timeouts."""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def http_client(kind: str) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(kind)
    if client is None or client.is_closed:
        t = settings.UPSTREAM_TIMEOUTS
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=t["connect"], read=t["read"], write=t["write"], pool=t["pool"]),
            limits=httpx.Limits(
                max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
                max_keepalive_connections=min(100, settings.UPSTREAM_MAX_CONNECTIONS),
                keepalive_expiry=30,
            ),
            # Clients never choose upstream URLs, and a redirect from an upstream is not followed.
            follow_redirects=False,
            trust_env=False,
        )
        per_loop[kind] = client
    return client


async def http_clients_close() -> None:
    loop = asyncio.get_running_loop()
    for client in _clients.pop(loop, {}).values():
        await client.aclose()
