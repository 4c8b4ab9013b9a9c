"""Which store this process uses, chosen once from settings.

redis.asyncio clients are bound to the event loop that created them, so the Redis store is
cached per loop (uvicorn has one; tests and Celery tasks create their own).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings

from statestore.base import StateStore
from statestore.memory import InProcessStore

T = TypeVar("T")

_memory = InProcessStore()
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StateStore] = weakref.WeakKeyDictionary()


def _new_redis_store() -> StateStore:
    # Imported on first use: redis-py costs ~0.36 s of start-up (python -X importtime) and the
    # embedded default (no REDIS_URL) never needs it.
    from statestore.redis import RedisStore

    return RedisStore(settings.REDIS_URL, prefix=getattr(settings, "STATE_KEY_PREFIX", "llmproxy:"))


def get_store() -> StateStore:
    url: str = settings.REDIS_URL
    if not url:
        return _memory
    loop = asyncio.get_running_loop()
    store = _per_loop.get(loop)
    if store is None:
        store = _new_redis_store()
        _per_loop[loop] = store
    return store


def store_is_shared() -> bool:
    """True when every process sees the same state (Redis); False for the embedded in-process
    store, whose contents only the process holding it (the web server) can see."""
    return bool(settings.REDIS_URL)


def call_sync(fn: Callable[[StateStore], Awaitable[T]]) -> T:
    """Run one store operation from synchronous code (admin, commands, Celery tasks).

    A private Redis client is used and closed, so a loop-bound client of the web process is
    never touched even when this runs in a sync_to_async thread.
    """

    async def run() -> T:
        if not settings.REDIS_URL:
            return await fn(_memory)
        store = _new_redis_store()
        try:
            return await fn(store)
        finally:
            await store.aclose()

    return async_to_sync(run)()


def reset_stores() -> None:
    """Forget cached clients and in-process state (tests, settings changes)."""
    _memory.clear()
    _per_loop.clear()
