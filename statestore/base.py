from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass


class LockNotAcquired(Exception):
    pass


class StoreUnavailable(Exception):
    """The shared store cannot be reached (connection refused, timeout, breaker open).

    One exception type for every backend, so callers choose fail-open or fail-closed per use
    without knowing which client library sits underneath (see docs/reliability.md).
    """


@dataclass(frozen=True, slots=True)
class CounterLimit:
    """One counter in an all-or-nothing reservation (see StateStore.counters_reserve)."""

    key: str
    amount: int
    limit: int
    ttl: float  # window length, applied only when the counter is created (fixed window)
    # Also count the charge in `held_key(key)` until it is settled, so a refusal can tell
    # "full of real use" from "full of reservations of requests still in flight".
    hold: bool = False


def held_key(key: str) -> str:
    return key + ":held"


@dataclass(frozen=True, slots=True)
class Reserved:
    """What counters_reserve did: admitted (`over` is None), or refused with `over` = the
    index of the first full counter and `busy` = it is full only because of held charges."""

    over: int | None
    busy: bool = False


class StateStore(ABC):
    """Async key/value, counter, list and lock primitives; all atomic per call."""

    #: True when every process sees the same state (Redis); False for the in-process store.
    shared: bool
    backend: str

    @abstractmethod
    async def ping(self) -> bool: ...

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        """Store value; with only_if_absent, return False (and change nothing) if the key exists."""

    @abstractmethod
    async def delete(self, *keys: str) -> int: ...

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add to an integer counter; ttl is applied only when the counter is created."""

    @abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Seconds left, or None when the key is missing or has no expiry."""

    @abstractmethod
    async def list_push(self, key: str, *values: bytes) -> int: ...

    @abstractmethod
    async def list_range(self, key: str, count: int) -> list[bytes]:
        """The first `count` items, oldest first, without removing them."""

    @abstractmethod
    async def list_drop(self, key: str, count: int) -> None:
        """Remove the first `count` items (after they were safely processed)."""

    @abstractmethod
    async def list_len(self, key: str) -> int: ...

    @abstractmethod
    async def counters_reserve(self, limits: Sequence[CounterLimit]) -> Reserved:
        """All or nothing, atomically: if every counter is below its limit, add every amount
        (and the same to its held counter when `hold`); otherwise change nothing and name the
        first full counter.

        A request is refused only when a counter has no room left at all, never because its
        own amount is larger than the room (a counter may end above its limit by one
        request's amount). Concurrent callers are admitted only while the charges already
        made, in flight or settled, leave room: if every amount is the most its request can
        use, real use ends at most one request's use above the limit."""

    @abstractmethod
    async def counters_adjust(self, deltas: Sequence[tuple[str, int]]) -> None:
        """Add (possibly negative) amounts to counters that still exist. A counter whose
        window already ended is left alone, so a late settlement never opens a new window."""

    async def counters_adjust_then_push(self, deltas: Sequence[tuple[str, int]], key: str, *values: bytes) -> None:
        """`counters_adjust(deltas)` and then `list_push(key, *values)`, in one round trip
        where the backend allows it (a request's settlement and its usage record)."""
        if deltas:
            await self.counters_adjust(deltas)
        await self.list_push(key, *values)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Several values in one round trip where the backend allows it (Redis MGET)."""
        return [await self.get(k) for k in keys]

    @abstractmethod
    async def _release(self, key: str, token: bytes) -> None:
        """Delete key only if it still holds token (never release someone else's lock)."""

    @abstractmethod
    async def aclose(self) -> None: ...

    @asynccontextmanager
    async def lock(self, key: str, *, ttl: float) -> AsyncIterator[None]:
        """A non-blocking mutual-exclusion lock across every process sharing this store.

        The TTL bounds how long a crashed holder can block others.
        """
        token = secrets.token_bytes(16)
        if not await self.set(f"lock:{key}", token, ttl=ttl, only_if_absent=True):
            raise LockNotAcquired(key)
        try:
            yield
        finally:
            await self._release(f"lock:{key}", token)
