"""Catalog: families, facts, aliases and prefixes resolve to the right (account, model)."""

from __future__ import annotations

import pytest

from accounts.services import account_create
from routing.catalog import catalog_models, catalog_resolve, model_family
from routing.models import CatalogEntry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("gpt-5.5", "gpt-5.5"),
        ("gpt-5.5-2026-04-23", "gpt-5.5"),
        ("openai/gpt-5.5-2026-04-23", "gpt-5.5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("o3-preview", "o3"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ],
)
def test_model_family(name: str, family: str) -> None:
    assert model_family(name) == family


def _account(label: str, models: list[str], **config: object) -> int:
    account = account_create(
        label=label,
        provider="openai_compat",
        base_url="http://127.0.0.1:9/v1",
        model_names=models,
        credential_kind="api_key",
        secret={"api_key": "k"},
    )
    if config:
        account.provider_config = config
        account.save(update_fields=["provider_config"])
    return account.id


async def test_facts_for_dated_variants_and_overrides() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(_account)("a", ["gpt-5.5-2026-04-23", "gpt-4o"])
    r = await catalog_resolve("gpt-5.5-2026-04-23")
    assert r.targets[0].facts.responses_only and r.targets[0].family == "gpt-5.5"
    assert not (await catalog_resolve("gpt-4o")).targets[0].facts.responses_only
    await sync_to_async(CatalogEntry.objects.create)(name="gpt-5.5", responses_only=False)
    from accounts.selectors import caches_clear

    caches_clear()
    assert not (await catalog_resolve("gpt-5.5-2026-04-23")).targets[0].facts.responses_only


async def test_alias_resolves_in_target_order_and_is_listed() -> None:
    from asgiref.sync import sync_to_async

    a = await sync_to_async(_account)("a", ["claude-sonnet-4-5-20250929"])
    b = await sync_to_async(_account)("b", ["claude-opus-4-5-20251101"])
    await sync_to_async(CatalogEntry.objects.create)(
        name="team-claude", targets=["claude-opus-4-5-20251101", "claude-sonnet-4-5-20250929"]
    )
    await sync_to_async(CatalogEntry.objects.create)(name="ghost", targets=["not-served"])
    r = await catalog_resolve("team-claude")
    assert [(t.account.id, t.upstream_model) for t in r.targets] == [
        (b, "claude-opus-4-5-20251101"),
        (a, "claude-sonnet-4-5-20250929"),
    ]
    names = await catalog_models()
    assert "team-claude" in names and "ghost" not in names


async def test_prefix_pins_one_account() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(_account)("a", ["gpt-4.1"])
    b = await sync_to_async(_account)("b", ["gpt-4.1"], model_prefix="team-b")
    r = await catalog_resolve("team-b/gpt-4.1")
    assert [(t.account.id, t.upstream_model) for t in r.targets] == [(b, "gpt-4.1")]
    assert len((await catalog_resolve("gpt-4.1")).targets) == 2
    assert "team-b/gpt-4.1" in await catalog_models()
