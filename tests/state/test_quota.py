"""state/quota: per-account, per-family quota readings in the state store (both backends)."""

from __future__ import annotations

import time

from state.quota import (
    quota_family_for_model,
    quota_family_remember,
    quota_headroom,
    quota_snapshot_set,
    quota_snapshots,
)
from statestore import get_store


async def test_set_list_and_headroom() -> None:
    store = get_store()
    now = time.time()
    await quota_snapshot_set(
        store, account_id=1, family="premium", used_percent=42.0, resets_at=now + 600, window_minutes=300
    )
    await quota_snapshot_set(
        store,
        account_id=1,
        family="premium",
        used_percent=90.0,
        resets_at=now + 6000,
        window_minutes=10080,
        window="secondary",
    )
    await quota_snapshot_set(
        store, account_id=1, family="codex_bengalfox", used_percent=7, resets_at=None, window_minutes=None
    )
    await quota_snapshot_set(store, account_id=2, family="premium", used_percent=1, resets_at=None, window_minutes=None)
    snaps = await quota_snapshots(store, account_id=1)
    assert [(s.family, s.window, s.used_percent) for s in snaps] == [
        ("codex_bengalfox", "primary", 7.0),
        ("premium", "primary", 42.0),
        ("premium", "secondary", 90.0),
    ]
    assert snaps[1].window_minutes == 300 and abs(snaps[1].resets_at - (now + 600)) < 1  # type: ignore[operator]
    # the tightest window decides the family's headroom
    assert abs((await quota_headroom(store, account_id=1, family="premium") or 0) - 0.10) < 1e-9
    assert await quota_headroom(store, account_id=1, family="unknown") is None
    assert await quota_headroom(store, account_id=2, family="premium") == 0.99


async def test_reading_expires_at_reset_and_past_resets_are_dropped() -> None:
    store = get_store()
    now = time.time()
    await quota_snapshot_set(store, account_id=3, family="f", used_percent=100, resets_at=now + 0.2, window_minutes=5)
    assert await quota_headroom(store, account_id=3, family="f") == 0.0
    await quota_snapshot_set(store, account_id=3, family="g", used_percent=50, resets_at=now - 1, window_minutes=5)
    assert await quota_headroom(store, account_id=3, family="g") is None
    import asyncio

    await asyncio.sleep(0.3)
    assert await quota_headroom(store, account_id=3, family="f") is None


async def test_model_family_memory() -> None:
    store = get_store()
    assert await quota_family_for_model(store, account_id=1, model="gpt-5.5") is None
    await quota_family_remember(store, account_id=1, model="gpt-5.5", family="premium")
    assert await quota_family_for_model(store, account_id=1, model="gpt-5.5") == "premium"
