"""Cooldown rules on both stores (the in-process one always; Redis when configured)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from django.conf import settings

from state.cooldown import (
    cooldown_check,
    cooldown_reset_backoff,
    cooldown_start,
    cooldowns_clear,
    cooldowns_list,
    family_scope,
    model_scope,
)
from statestore import StateStore
from statestore.memory import InProcessStore


@pytest.fixture(params=["in-process", "redis"])
async def any_store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "in-process":
        yield InProcessStore()
        return
    if not settings.REDIS_URL:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: Redis must be tested")
        pytest.skip("no REDIS_URL: Redis cooldown tests run in CI")
    from statestore.redis import RedisStore

    store = RedisStore(settings.REDIS_URL, prefix=f"llmproxy-cool-{os.getpid()}:")
    await store.flush_prefix()
    yield store
    await store.flush_prefix()
    await store.aclose()


async def test_family_cooldown_only_blocks_that_family(any_store: StateStore) -> None:
    await cooldown_start(any_store, account_id=1, scope=family_scope("gpt-5"), seconds=30, reason="429")
    states, _ = await cooldown_check(
        any_store, [(1, "gpt-5", "gpt-5-mini"), (1, "gpt-4o", "gpt-4o"), (2, "gpt-5", "x")]
    )
    assert states[0].wait is not None and 29 < states[0].wait <= 30
    assert states[1].wait is None and states[2].wait is None


async def test_model_scope_and_account_scope(any_store: StateStore) -> None:
    await cooldown_start(any_store, account_id=1, scope=model_scope("m1"), seconds=10, reason="unsupported")
    await cooldown_start(any_store, account_id=2, scope="account", seconds=5, reason="5xx")
    states, _ = await cooldown_check(any_store, [(1, "f", "m1"), (1, "f", "m2"), (2, "f", "m2")])
    assert [s.wait is not None for s in states] == [True, False, True]


async def test_escalation_happens_once_per_window_and_resets_on_success(any_store: StateStore) -> None:
    base = settings.COOLDOWN_BACKOFF_BASE_SECONDS
    first = await cooldown_start(any_store, account_id=1, scope=family_scope("f"), seconds=None, reason="429")
    again = await cooldown_start(any_store, account_id=1, scope=family_scope("f"), seconds=None, reason="429")
    assert first == base and 0 < again <= base, "a second failure in the same window must not escalate"
    await any_store.delete("cool:1:family:f")  # the window ends
    second = await cooldown_start(any_store, account_id=1, scope=family_scope("f"), seconds=None, reason="429")
    assert second == base * 2
    [state], _ = await cooldown_check(any_store, [(1, "f", "m")])
    assert state.escalated
    await cooldown_reset_backoff(any_store, account_id=1, family="f")
    await any_store.delete("cool:1:family:f")
    assert await cooldown_start(any_store, account_id=1, scope=family_scope("f"), seconds=None, reason="") == base


async def test_backoff_is_capped(any_store: StateStore, settings: pytest.FixtureRequest) -> None:
    settings.COOLDOWN_BACKOFF_CAP_SECONDS = 12  # type: ignore[attr-defined]
    lengths = []
    for _ in range(5):
        lengths.append(await cooldown_start(any_store, account_id=3, scope="account", seconds=None, reason=""))
        await any_store.delete("cool:3:account")
    assert max(lengths) == 12 and lengths[:2] == [settings.COOLDOWN_BACKOFF_BASE_SECONDS, 10]  # type: ignore[attr-defined]


async def test_window_ends_by_itself(any_store: StateStore) -> None:
    await cooldown_start(any_store, account_id=1, scope=family_scope("f"), seconds=0.2, reason="")
    assert (await cooldown_check(any_store, [(1, "f", "m")]))[0][0].wait is not None
    await asyncio.sleep(0.3)
    assert (await cooldown_check(any_store, [(1, "f", "m")]))[0][0].wait is None


async def test_list_and_clear_for_the_admin(any_store: StateStore) -> None:
    await cooldown_start(any_store, account_id=7, scope=family_scope("a"), seconds=30, reason="rate limited")
    await cooldown_start(any_store, account_id=7, scope=model_scope("b"), seconds=60, reason="unsupported")
    await cooldown_start(any_store, account_id=7, scope=family_scope("a"), seconds=30, reason="again")
    views = await cooldowns_list(any_store, account_id=7)
    assert sorted(v.scope for v in views) == ["family:a", "model:b"]
    assert {v.reason for v in views} >= {"unsupported"}
    assert await cooldowns_clear(any_store, account_id=7) >= 2
    assert await cooldowns_list(any_store, account_id=7) == []
    assert (await cooldown_check(any_store, [(7, "a", "b")]))[0][0].wait is None
