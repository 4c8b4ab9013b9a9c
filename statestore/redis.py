"""Redis state store: shared by every web and Celery process; atomic per operation."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from statestore.base import CounterLimit, Reserved, StateStore, StoreUnavailable, held_key
from statestore.coalesce import Coalescer

P = ParamSpec("P")
T = TypeVar("T")

# After a connection failure every call fails at once for this long instead of each paying a
# connect/socket timeout: with Redis down the hot path must stay fast to be useful fail-open.
BREAKER_SECONDS = 1.0
_DOWN_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError)


def _guarded(
    fn: Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]]:
    """Translate connection-level failures into StoreUnavailable and trip the breaker."""

    @functools.wraps(fn)
    async def wrapper(self: RedisStore, *args: P.args, **kwargs: P.kwargs) -> T:
        self._breaker_check()
        try:
            return await fn(self, *args, **kwargs)
        except _DOWN_ERRORS as exc:
            self._down_until = time.monotonic() + BREAKER_SECONDS
            raise StoreUnavailable(f"redis unavailable: {exc.__class__.__name__}") from exc

    return wrapper


def _as_bytes(value: bytes | str) -> bytes:
    # The client runs with decode_responses=False, so values are bytes; the stubs allow str.
    return value if isinstance(value, bytes) else value.encode()


# Compare-and-delete: release a lock only if we still own it.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# INCRBY that sets the expiry only on creation (a fixed window, not a sliding one).
_INCR_TTL = """
local v = redis.call('incrby', KEYS[1], ARGV[1])
if v == tonumber(ARGV[1]) and tonumber(ARGV[2]) > 0 then redis.call('pexpire', KEYS[1], ARGV[2]) end
return v
"""

# All-or-nothing reservation over several fixed-window counters, in one script so no other
# client can interleave between the check and the increment. KEYS: the n counters, then their
# n held counters. ARGV per counter: amount, limit, window in ms, hold (1/0). Returns {0, 0}
# when reserved, else {index of the first full counter (1-based), busy}: busy = 1 when that
# counter is full only because of held (in-flight) charges.
_RESERVE = """
local n = #KEYS / 2
for i = 1, n do
  local current = tonumber(redis.call('get', KEYS[i]) or '0')
  local limit = tonumber(ARGV[4*i-2])
  if current >= limit then
    local held = 0
    if ARGV[4*i] == '1' then held = tonumber(redis.call('get', KEYS[n+i]) or '0') end
    if current - held < limit then return {i, 1} end
    return {i, 0}
  end
end
for i = 1, n do
  local targets = {KEYS[i]}
  if ARGV[4*i] == '1' then targets[2] = KEYS[n+i] end
  for _, key in ipairs(targets) do
    redis.call('incrby', key, ARGV[4*i-3])
    if redis.call('pttl', key) < 0 then redis.call('pexpire', key, ARGV[4*i-1]) end
  end
end
return {0, 0}
"""
# Settle: adjust only counters whose window is still open.
_ADJUST = """
for i, key in ipairs(KEYS) do
  if redis.call('exists', key) == 1 then redis.call('incrby', key, ARGV[i]) end
end
return 0
"""

# Settle, then buffer the usage record: _ADJUST followed by RPUSH in one round trip.
# KEYS: the n counters, then the list. ARGV: n, the n amounts, then the values to push.
_ADJUST_PUSH = """
local n = tonumber(ARGV[1])
for i = 1, n do
  if redis.call('exists', KEYS[i]) == 1 then redis.call('incrby', KEYS[i], ARGV[i+1]) end
end
return redis.call('rpush', KEYS[n+1], unpack(ARGV, n+2))
"""


class RedisStore(StateStore):
    shared = True
    backend = "redis"

    def __init__(self, url: str, *, prefix: str = "llmproxy:") -> None:
        # A blocking pool: under a burst, callers wait briefly for a connection instead of
        # failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=256,
            timeout=5,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
            # One immediate retry reconnects a pooled connection that a Redis restart killed;
            # redis-py's default (10 retries with backoff) would hold each call for seconds
            # while Redis is down, which defeats failing open.
            retry=Retry(NoBackoff(), 1),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._prefix = prefix
        self._down_until = 0.0
        self._release_script = self._redis.register_script(_RELEASE)
        self._incr_script = self._redis.register_script(_INCR_TTL)
        self._reserve_script = self._redis.register_script(_RESERVE)
        self._adjust_script = self._redis.register_script(_ADJUST)
        self._adjust_push_script = self._redis.register_script(_ADJUST_PUSH)
        # The two commands of every request, each sent once for all requests that issue it
        # while one is in flight (statestore/coalesce.py).
        self._mget: Coalescer[list[str], list[Any]] = Coalescer(self._mget_send)
        self._rpush: Coalescer[tuple[str, tuple[bytes, ...]], int] = Coalescer(self._rpush_send)

    def _breaker_check(self) -> None:
        # Also for a coalesced batch that waited behind a call which just tripped the breaker:
        # its callers fail now, as they would have had they sent their own command.
        if self._down_until > time.monotonic():
            raise StoreUnavailable("redis unavailable (breaker open)")

    def _k(self, key: str) -> str:
        return self._prefix + key

    @_guarded
    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    @_guarded
    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._k(key))
        return None if value is None else _as_bytes(value)

    @_guarded
    async def set(self, key: str, value: bytes, *, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        px = max(1, int(ttl * 1000)) if ttl is not None else None
        result = await self._redis.set(self._k(key), value, px=px, nx=only_if_absent)
        return bool(result)

    @_guarded
    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self._redis.delete(*(self._k(k) for k in keys)))

    @_guarded
    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        if ttl is None:
            return int(await self._redis.incrby(self._k(key), amount))
        return int(await self._incr_script(keys=[self._k(key)], args=[amount, max(1, int(ttl * 1000))]))

    @_guarded
    async def ttl(self, key: str) -> float | None:
        ms = int(await self._redis.pttl(self._k(key)))
        return None if ms < 0 else ms / 1000.0

    @_guarded
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._mget.call([self._k(k) for k in keys])
        return [None if v is None else _as_bytes(v) for v in values]

    async def _mget_send(self, calls: Sequence[list[str]]) -> list[list[Any]]:
        """One MGET for every queued call's keys (each key once); each call gets its own values."""
        self._breaker_check()
        if len(calls) == 1:
            return [await self._redis.mget(calls[0])]
        # Concurrent requests mostly read the same keys (the same accounts' cooldowns): each once.
        unique = list(dict.fromkeys(key for keys in calls for key in keys))
        found = dict(zip(unique, await self._redis.mget(unique), strict=True))
        return [[found[key] for key in keys] for keys in calls]

    @_guarded
    async def list_push(self, key: str, *values: bytes) -> int:
        return await self._rpush.call((self._k(key), values))

    async def _rpush_send(self, calls: Sequence[tuple[str, tuple[bytes, ...]]]) -> list[int]:
        """One RPUSH per list for every queued call, values in call order (per caller too).
        Each call gets the list's length after the whole batch."""
        self._breaker_check()
        grouped: dict[str, list[bytes]] = {}
        for key, values in calls:
            grouped.setdefault(key, []).extend(values)
        if len(grouped) == 1:
            [(only, pushed)] = grouped.items()
            lengths = {only: int(await self._redis.rpush(only, *pushed))}
        else:
            pipe = self._redis.pipeline(transaction=False)
            for each, pushed in grouped.items():
                pipe.rpush(each, *pushed)
            lengths = {key: int(n) for key, n in zip(grouped, await pipe.execute(), strict=True)}
        return [lengths[key] for key, _ in calls]

    @_guarded
    async def list_range(self, key: str, count: int) -> list[bytes]:
        return [_as_bytes(v) for v in await self._redis.lrange(self._k(key), 0, count - 1)]

    @_guarded
    async def list_drop(self, key: str, count: int) -> None:
        await self._redis.ltrim(self._k(key), count, -1)

    @_guarded
    async def list_len(self, key: str) -> int:
        return int(await self._redis.llen(self._k(key)))

    @_guarded
    async def counters_reserve(self, limits: Sequence[CounterLimit]) -> Reserved:
        if not limits:
            return Reserved(over=None)
        args: list[int] = []
        for lim in limits:
            args += [lim.amount, lim.limit, max(1, int(lim.ttl * 1000)), int(lim.hold)]
        keys = [self._k(lim.key) for lim in limits] + [self._k(held_key(lim.key)) for lim in limits]
        over, busy = (int(v) for v in await self._reserve_script(keys=keys, args=args))
        return Reserved(over=None) if over == 0 else Reserved(over=over - 1, busy=bool(busy))

    @_guarded
    async def counters_adjust(self, deltas: Sequence[tuple[str, int]]) -> None:
        if deltas:
            await self._adjust_script(keys=[self._k(k) for k, _ in deltas], args=[a for _, a in deltas])

    @_guarded
    async def counters_adjust_then_push(self, deltas: Sequence[tuple[str, int]], key: str, *values: bytes) -> None:
        if not deltas:
            await self._redis.rpush(self._k(key), *values)
            return
        keys = [self._k(k) for k, _ in deltas] + [self._k(key)]
        await self._adjust_push_script(keys=keys, args=[len(deltas), *(a for _, a in deltas), *values])

    @_guarded
    async def _release(self, key: str, token: bytes) -> None:
        await self._release_script(keys=[self._k(key)], args=[token])

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()

    async def flush_prefix(self) -> None:
        """Delete every key under this store's prefix (tests only)."""
        async for key in self._redis.scan_iter(match=self._prefix + "*", count=500):
            await self._redis.delete(key)
