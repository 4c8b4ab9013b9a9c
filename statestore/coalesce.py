"""Coalescing: calls of one kind made while one is in flight go out together in one round trip.

Every proxied request reads the selection state (an MGET) and pushes its usage record (an RPUSH).
redis-py spends ~50-100 µs of CPU per command (pool checkout, packing, parsing), which made the
two commands a fifth of a request's CPU under load (docs/performance.md, "Coalesced Redis calls").
With this, the first call goes out at once, as before — nothing waits at low load — and calls
arriving while it is in flight are queued and sent together as soon as it returns: under load,
one command serves many requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")  # one caller's argument
R = TypeVar("R")  # one caller's result

Send = Callable[[Sequence[A]], Awaitable[Sequence[R]]]


class Coalescer(Generic[A, R]):
    """`await c.call(arg)` → `send([arg, ...])[i]` for this caller's position `i`.

    `send` takes the queued arguments in arrival order and returns one result per argument. If
    it raises, every caller of that batch gets the exception. A caller cancelled while queued
    does not take its argument back: a batch that was formed goes out whole (a usage record
    pushed by a request whose client left is still pushed). Bound to the event loop of its
    first call, like the Redis client it serves."""

    def __init__(self, send: Send[A, R]) -> None:
        self._send = send
        self._busy = False
        self._queue: list[tuple[A, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None  # referenced: a bare task may be collected

    async def call(self, arg: A) -> R:
        if self._busy:
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._queue.append((arg, future))
            return await future
        self._busy = True
        try:
            return (await self._send((arg,)))[0]
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Called by whoever finished a send: start the queue's drain, or become idle."""
        if self._queue:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            batch, self._queue = self._queue, []
            try:
                results = await self._send([arg for arg, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"coalesced send answered {len(results)} of {len(batch)} calls")
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # every caller of the batch learns of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._hand_over()
