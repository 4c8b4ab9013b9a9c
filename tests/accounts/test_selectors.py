"""Hot-path caches: a burst of requests that misses loads each table once, not once per request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import accounts.selectors as selectors
import pricing.selectors as pricing
import routing.catalog as catalog
from accounts.services import account_create, client_key_create
from infra.db import db_call

pytestmark = pytest.mark.django_db(transaction=True)


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[str]:
    calls: list[str] = []

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn.__name__)
        await asyncio.sleep(0.02)  # a slow database: the burst arrives while the load runs
        return await db_call(fn, *args, **kwargs)

    monkeypatch.setattr(module, "db_call", counted)
    return calls


async def _seed() -> str:
    def seed() -> str:
        account_create(
            label="a",
            provider="openai_compat",
            base_url="http://127.0.0.1:9/v1",
            model_names=["m"],
            credential_kind="api_key",
            secret={"api_key": "k"},
        )
        return client_key_create(name="dev")[1]

    return await db_call(seed)


async def test_a_burst_of_requests_loads_keys_accounts_catalog_and_budgets_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = await _seed()
    selectors.caches_clear()
    pricing.price_book_clear()
    loads = _counting(monkeypatch, selectors)
    catalog_loads = _counting(monkeypatch, catalog)
    budget_loads = _counting(monkeypatch, pricing)

    async def request() -> None:
        key = await selectors.client_key_lookup(raw)
        assert key is not None
        await catalog.catalog_resolve("m")
        await pricing.money_limits(key.id, key.team_id)

    await asyncio.gather(*(request() for _ in range(50)))
    assert sorted(loads) == ["_load_accounts", "first"]  # the key row, the account table
    assert catalog_loads == ["_load_entries"]
    assert budget_loads == ["_load_budgets"]


async def test_a_change_during_a_load_is_not_hidden_by_it(monkeypatch: pytest.MonkeyPatch) -> None:
    await _seed()
    selectors.caches_clear()
    loads = _counting(monkeypatch, selectors)
    first = asyncio.create_task(selectors.accounts_enabled())
    await asyncio.sleep(0.005)  # the load is running
    selectors.caches_clear()  # an admin change (the version counter moved)
    assert [a.label for a in await selectors.accounts_enabled()] == ["a"]
    await first
    assert loads == ["_load_accounts", "_load_accounts"]  # the second did not join the first
    await selectors.accounts_enabled()
    assert len(loads) == 2  # and its result is the cached one
