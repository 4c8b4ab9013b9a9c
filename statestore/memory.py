"""In-process state store: the embedded default for a single web process.

It is deliberately process-local; deployments with several processes set REDIS_URL.
A threading lock keeps compound operations atomic when tests drive it from two threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from statestore.base import CounterLimit, Reserved, StateStore, held_key


class InProcessStore(StateStore):
    shared = False
    backend = "in-process"

    def __init__(self) -> None:
        self._values: dict[str, bytes | int] = {}
        self._expiry: dict[str, float] = {}
        self._lists: dict[str, deque[bytes]] = {}
        self._mutex = threading.Lock()

    def _alive(self, key: str, now: float) -> bool:
        exp = self._expiry.get(key)
        if exp is not None and exp <= now:
            self._values.pop(key, None)
            self._expiry.pop(key, None)
            return False
        return key in self._values

    async def ping(self) -> bool:
        return True

    async def get(self, key: str) -> bytes | None:
        with self._mutex:
            if not self._alive(key, time.monotonic()):
                return None
            value = self._values[key]
            return str(value).encode() if isinstance(value, int) else value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        with self._mutex:
            now = time.monotonic()
            if only_if_absent and self._alive(key, now):
                return False
            self._values[key] = value
            if ttl is None:
                self._expiry.pop(key, None)
            else:
                self._expiry[key] = now + ttl
            return True

    async def delete(self, *keys: str) -> int:
        with self._mutex:
            now = time.monotonic()
            removed = 0
            for key in keys:
                if self._alive(key, now):
                    removed += 1
                self._values.pop(key, None)
                self._expiry.pop(key, None)
                if self._lists.pop(key, None) is not None:
                    removed += 1
            return removed

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        with self._mutex:
            now = time.monotonic()
            if self._alive(key, now):
                current = self._values[key]
                value = (current if isinstance(current, int) else int(current)) + amount
            else:
                value = amount
                if ttl is not None:
                    self._expiry[key] = now + ttl
            self._values[key] = value
            return value

    async def ttl(self, key: str) -> float | None:
        with self._mutex:
            now = time.monotonic()
            if not self._alive(key, now):
                return None
            exp = self._expiry.get(key)
            return None if exp is None else max(0.0, exp - now)

    async def list_push(self, key: str, *values: bytes) -> int:
        with self._mutex:
            items = self._lists.setdefault(key, deque())
            items.extend(values)
            return len(items)

    async def list_range(self, key: str, count: int) -> list[bytes]:
        with self._mutex:
            items = self._lists.get(key)
            if not items:
                return []
            return [items[i] for i in range(min(count, len(items)))]

    async def list_drop(self, key: str, count: int) -> None:
        with self._mutex:
            items = self._lists.get(key)
            for _ in range(min(count, len(items) if items else 0)):
                items.popleft()  # type: ignore[union-attr]

    async def list_len(self, key: str) -> int:
        with self._mutex:
            return len(self._lists.get(key, ()))

    def _int(self, key: str, now: float) -> int:
        if not self._alive(key, now):
            return 0
        value = self._values[key]
        return value if isinstance(value, int) else int(value)

    async def counters_reserve(self, limits: Sequence[CounterLimit]) -> Reserved:
        with self._mutex:
            now = time.monotonic()
            for i, lim in enumerate(limits):
                current = self._int(lim.key, now)
                if current >= lim.limit:
                    held = self._int(held_key(lim.key), now) if lim.hold else 0
                    return Reserved(over=i, busy=current - held < lim.limit)
            for lim in limits:
                for key in (lim.key, held_key(lim.key)) if lim.hold else (lim.key,):
                    if not self._alive(key, now):
                        self._expiry[key] = now + lim.ttl
                    self._values[key] = self._int(key, now) + lim.amount
            return Reserved(over=None)

    async def counters_adjust(self, deltas: Sequence[tuple[str, int]]) -> None:
        with self._mutex:
            now = time.monotonic()
            for key, amount in deltas:
                if self._alive(key, now):
                    self._values[key] = self._int(key, now) + amount

    async def _release(self, key: str, token: bytes) -> None:
        with self._mutex:
            if self._alive(key, time.monotonic()) and self._values.get(key) == token:
                self._values.pop(key, None)
                self._expiry.pop(key, None)

    async def aclose(self) -> None:
        return None

    def clear(self) -> None:
        with self._mutex:
            self._values.clear()
            self._expiry.clear()
            self._lists.clear()
