"""Timed cooldowns per (account, model) in the shared state store."""

from __future__ import annotations

from statestore import StateStore


def _key(account_id: int, model: str) -> str:
    return f"cool:{account_id}:{model}"


async def cooldown_remaining(store: StateStore, *, account_id: int, model: str) -> float | None:
    return await store.ttl(_key(account_id, model))


async def cooldown_start(store: StateStore, *, account_id: int, model: str, seconds: float) -> None:
    if seconds > 0:
        await store.set(_key(account_id, model), b"1", ttl=seconds)


async def cooldown_clear(store: StateStore, *, account_id: int, model: str) -> None:
    await store.delete(_key(account_id, model))
