"""Timed cooldowns in the shared state store, per (account, scope).

Scopes: `family:<family>` (rate limits and quota windows), `model:<model>` ("unsupported on
this account"), `account` (account-wide transient trouble). Persistent problems that need a
human (revoked credential, no entitlement) are account states in the database, not here.

Each cooldown is one key with a TTL, so it vanishes by itself when the window ends; checking
every candidate of a request is one MGET. Without a reset hint the cooldown escalates
(base * 2^n, capped), at most once per window: failures while a window is open don't stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
from django.conf import settings

from statestore import StateStore

ACCOUNT_SCOPE = "account"


def family_scope(family: str) -> str:
    return f"family:{family}"


def model_scope(model: str) -> str:
    return f"model:{model}"


def _key(account_id: int, scope: str) -> str:
    return f"cool:{account_id}:{scope}"


def _level_key(account_id: int, scope: str) -> str:
    return f"coollvl:{account_id}:{scope}"


def _index_key(account_id: int) -> str:
    return f"coolidx:{account_id}"


@dataclass(frozen=True, slots=True)
class CooldownView:
    scope: str
    remaining: float
    reason: str


def target_scopes(family: str, model: str) -> tuple[str, str, str]:
    return (ACCOUNT_SCOPE, family_scope(family), model_scope(model))


@dataclass(frozen=True, slots=True)
class CandidateState:
    wait: float | None  # seconds until usable, None = usable now
    escalated: bool  # a backoff level exists: a success should reset it


async def cooldown_check(
    store: StateStore, candidates: Sequence[tuple[int, str, str]], *, also: Sequence[str] = ()
) -> tuple[list[CandidateState], list[bytes | None]]:
    """For each (account_id, family, model): how long it must still wait. One round trip,
    which also fetches the `also` keys (e.g. the conversation's affinity binding)."""
    keys: list[str] = list(also)
    for account_id, family, model in candidates:
        for scope in target_scopes(family, model):
            keys.append(_key(account_id, scope))
        keys.append(_level_key(account_id, family_scope(family)))
    fetched = await store.get_many(keys) if keys else []
    extras, values = fetched[: len(also)], fetched[len(also) :]
    now = time.time()
    result = []
    for i in range(len(candidates)):
        chunk = values[i * 4 : i * 4 + 4]
        wait: float | None = None
        for raw in chunk[:3]:
            if raw is None:
                continue
            until = _until(raw)
            if until > now:
                wait = max(wait or 0.0, until - now)
        result.append(CandidateState(wait=wait, escalated=chunk[3] is not None))
    return result, extras


def _until(raw: bytes) -> float:
    try:
        return float(orjson.loads(raw)["until"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0


async def cooldown_start(
    store: StateStore, *, account_id: int, scope: str, seconds: float | None, reason: str
) -> float:
    """Start (or keep) a cooldown; `seconds=None` means escalating backoff. Returns its length."""
    key = _key(account_id, scope)
    if seconds is None:
        current = await store.ttl(key)
        if current is not None and current > 0:
            return current  # a window is already open: don't escalate twice for it
        cap = settings.COOLDOWN_BACKOFF_CAP_SECONDS
        level = await store.incr(_level_key(account_id, scope), ttl=cap * 4)
        seconds = min(cap, settings.COOLDOWN_BACKOFF_BASE_SECONDS * (2 ** (level - 1)))
    if seconds <= 0:
        return 0.0
    payload = orjson.dumps({"until": time.time() + seconds, "reason": reason[:300]})
    await store.set(key, payload, ttl=seconds)
    await store.list_push(_index_key(account_id), scope.encode())
    return seconds


async def cooldown_reset_backoff(store: StateStore, *, account_id: int, family: str) -> None:
    """A success clears stale escalation for that family."""
    await store.delete(_level_key(account_id, family_scope(family)))


async def _indexed_scopes(store: StateStore, account_id: int) -> list[str]:
    raw = await store.list_range(_index_key(account_id), 1000)
    return list(dict.fromkeys(r.decode() for r in raw))


async def cooldowns_list(store: StateStore, *, account_id: int) -> list[CooldownView]:
    """The account's live cooldowns (for the admin board and operators)."""
    scopes = await _indexed_scopes(store, account_id)
    values = await store.get_many([_key(account_id, s) for s in scopes])
    now = time.time()
    live = []
    for scope, raw in zip(scopes, values, strict=True):
        if raw is None:
            continue
        data = orjson.loads(raw)
        remaining = float(data.get("until", 0)) - now
        if remaining > 0:
            live.append(CooldownView(scope=scope, remaining=remaining, reason=str(data.get("reason", ""))))
    if len(live) < len(scopes):
        # Keep the index small: rewrite it with the scopes still cooling.
        await store.delete(_index_key(account_id))
        if live:
            await store.list_push(_index_key(account_id), *(v.scope.encode() for v in live))
    return live


async def cooldowns_clear(store: StateStore, *, account_id: int, scopes: Iterable[str] | None = None) -> int:
    """Clear cooldowns (all of the account's, or the given scopes) and their backoff levels."""
    chosen = list(scopes) if scopes is not None else await _indexed_scopes(store, account_id)
    keys = [_key(account_id, s) for s in chosen] + [_level_key(account_id, s) for s in chosen]
    cleared = await store.delete(*keys) if keys else 0
    if scopes is None:
        await store.delete(_index_key(account_id))
    return cleared
