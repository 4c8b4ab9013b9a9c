"""One load at a time per cache entry: concurrent callers that miss await the same load.

The per-process caches of database rows (keys, accounts, catalog, budgets) expire together and
are cleared together on every admin change. Without this, a burst of requests arriving at that
moment — 200 streams opening at once — each ran the same query and decryption in a worker
thread, and the burst's first bytes waited for all of them (docs/performance.md, "Cache loads").
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """`await flight.run(key, load)`: runs `load()` unless a load of `key` is already running
    on this event loop, in which case the caller awaits that one. A caller cancelled while
    waiting does not cancel the load (others may be waiting on it); a failed load fails every
    waiter and the next caller starts a new one."""

    def __init__(self) -> None:
        # Per loop: tasks belong to one event loop (tests and the WebSocket path run several).
        self._running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, asyncio.Task[T]]] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        running = self._running.setdefault(loop, {})
        task = running.get(key)
        if task is None:
            task = loop.create_task(_awaited(load))
            running[key] = task
            task.add_done_callback(lambda done: _forget(running, key, done))
        return await asyncio.shield(task)


async def _awaited(load: Callable[[], Awaitable[T]]) -> T:
    return await load()


def _forget(running: dict[Hashable, asyncio.Task[T]], key: Hashable, done: asyncio.Task[T]) -> None:
    if running.get(key) is done:
        del running[key]
    if not done.cancelled():
        done.exception()  # retrieved: every waiter may have been cancelled (no "never retrieved" log)
