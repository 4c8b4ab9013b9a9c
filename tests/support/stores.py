"""The state stores the tests run against: the in-process one always, Redis when configured
(always in CI, where a missing Redis fails the run instead of skipping)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from django.conf import settings

from statestore import StateStore
from statestore.memory import InProcessStore


def redis_url() -> str:
    return settings.REDIS_URL or os.environ.get("TEST_REDIS_URL", "")


async def store_for_tests(kind: str, name: str) -> AsyncIterator[StateStore]:
    """Yield a fresh store of `kind` ("in-process" or "redis"); a Redis store gets its own key
    prefix (`name`) and is emptied before and after."""
    if kind == "in-process":
        yield InProcessStore()
        return
    url = redis_url()
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: the Redis store must be tested (set REDIS_URL)")
        pytest.skip("no REDIS_URL: Redis tests run in CI")
    from statestore.redis import RedisStore

    store = RedisStore(url, prefix=f"llmproxy-{name}-{os.getpid()}:")
    await store.flush_prefix()
    try:
        yield store
    finally:
        await store.flush_prefix()
        await store.aclose()
