"""Which price applies: overrides, subscription accounts, list prices; records priced on write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts.models import UpstreamAccount
from accounts.services import account_create
from audit.models import AdminAction, Granularity, UsageRecord, UsageRollup
from audit.rollups import rollups_update
from audit.services import _insert
from executors.openai_compat.services import account_add_openai_compat
from pricing.cost import TokenCounts
from pricing.models import PriceMode, PriceRule
from pricing.selectors import PriceSource, price_book_sync
from pricing.services import price_rule_delete, price_rule_save, usage_reprice

pytestmark = pytest.mark.django_db

T = TokenCounts(input=1_000_000, output=1_000_000)


def _metered(label: str = "openai", url: str = "https://api.openai.com/v1") -> UpstreamAccount:
    return account_add_openai_compat(label=label, base_url=url, api_key="sk-x", model_names=["gpt-4o-mini"])


def _subscription(label: str = "codex") -> UpstreamAccount:
    return account_create(
        label=label,
        provider="codex",
        base_url="https://chatgpt.com/backend-api/codex",
        model_names=["gpt-5.5"],
        credential_kind="oauth",  # the Codex sign-in credential
        secret={"access_token": "a", "refresh_token": "r"},
    )


def _price(account: UpstreamAccount | None, model: str, served: str = "") -> tuple[int | None, str]:
    priced = price_book_sync().price(
        account_id=account.id if account else None, requested=model, served=served, tokens=T
    )
    return priced.nano, priced.source


def test_metered_account_pays_list_price_subscription_is_free() -> None:
    openai, codex = _metered(), _subscription()
    # gpt-4o-mini: $0.15 + $0.60 for 1M in + 1M out.
    assert _price(openai, "gpt-4o-mini") == (750_000_000, PriceSource.LIST)
    assert _price(codex, "gpt-5.5") == (0, PriceSource.FREE)
    # A request that never reached an account costs nothing and has no source.
    assert _price(None, "gpt-4o-mini") == (0, "")


def test_unknown_model_is_left_unpriced_not_zero() -> None:
    acct = _metered(url="https://llm.internal.example/v1")
    assert _price(acct, "acme-private-7b") == (None, PriceSource.UNKNOWN)


def test_served_model_prices_when_the_requested_name_is_an_alias() -> None:
    acct = _metered()
    assert _price(acct, "team-default", served="gpt-4o-mini") == (750_000_000, PriceSource.LIST)


def test_most_specific_override_wins_and_changes_are_logged(admin_user: object) -> None:
    openai, other = _metered(), _metered("other", "https://api.openai.com/v1/")
    price_rule_save(PriceRule(model="gpt-*", mode=PriceMode.CUSTOM, input_per_mtok=Decimal(1), output_per_mtok=2))
    price_rule_save(
        PriceRule(model="GPT-4o-mini ", mode=PriceMode.CUSTOM, input_per_mtok=Decimal(3), output_per_mtok=4),
        actor=admin_user,
    )
    price_rule_save(PriceRule(account=openai, model="*", mode=PriceMode.FREE))
    assert _price(openai, "gpt-4o-mini") == (0, PriceSource.FREE)  # the account's own rule first
    assert _price(other, "gpt-4o-mini") == (7_000_000_000, PriceSource.RULE)  # exact name before pattern
    assert _price(other, "gpt-4.1") == (3_000_000_000, PriceSource.RULE)  # the pattern
    log = AdminAction.objects.filter(action="price_rule_create").order_by("id")
    assert log.count() == 3 and log[1].actor_label == "admin" and log[1].changes["model"] == [None, "gpt-4o-mini"]


def test_a_list_rule_prices_a_subscription_account_at_list() -> None:
    codex = _subscription()
    price_rule_save(PriceRule(account=codex, model="*", mode=PriceMode.LIST))
    nano, source = _price(codex, "gpt-5.5")
    assert source == PriceSource.LIST and nano and nano > 0


def test_invalid_overrides_are_refused() -> None:
    with pytest.raises(ValidationError):
        price_rule_save(PriceRule(model="x", mode=PriceMode.CUSTOM))  # no rate
    with pytest.raises(ValidationError):
        price_rule_save(PriceRule(model="x", mode=PriceMode.CUSTOM, input_per_mtok=Decimal(-1)))
    price_rule_save(PriceRule(model="x", mode=PriceMode.FREE))
    with pytest.raises(ValidationError):
        price_rule_save(PriceRule(model="X", mode=PriceMode.FREE))  # same scope twice


def _record(account: UpstreamAccount, model: str, **tokens: int) -> UsageRecord:
    return UsageRecord(
        request_id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        account_id=account.id,
        account_label=account.label,
        surface="chat",
        requested_model=model,
        served_model=model,
        outcome="ok",
        status_code=200,
        **tokens,
    )


def test_flusher_prices_records_and_rollups_sum_the_cost() -> None:
    openai, codex = _metered(), _subscription()
    _insert(
        [
            _record(openai, "gpt-4o-mini", input_tokens=1000, cached_tokens=200, output_tokens=500),
            _record(openai, "acme-private", input_tokens=10, output_tokens=10),
            _record(codex, "gpt-5.5", input_tokens=10_000, output_tokens=1_000),
        ]
    )
    rows = {r.requested_model: r for r in UsageRecord.objects.all()}
    assert (rows["gpt-4o-mini"].cost_nanousd, rows["gpt-4o-mini"].price_source) == (435_000, "list")
    assert (rows["acme-private"].cost_nanousd, rows["acme-private"].price_source) == (None, "unknown")
    assert (rows["gpt-5.5"].cost_nanousd, rows["gpt-5.5"].price_source) == (0, "free")
    rollups_update()
    day = UsageRollup.objects.get(granularity=Granularity.DAY_KEY)
    assert (day.cost_nanousd, day.unpriced) == (435_000, 1)


def test_reprice_applies_a_new_override_to_past_records() -> None:
    openai = _metered()
    _insert([_record(openai, "gpt-4o-mini", input_tokens=1_000_000)])
    rule = price_rule_save(PriceRule(model="gpt-4o-mini", mode=PriceMode.CUSTOM, input_per_mtok=Decimal("0.05")))
    now = datetime.now(UTC)
    assert usage_reprice(start=now - timedelta(days=1), end=now + timedelta(days=1)) == 1
    assert UsageRecord.objects.get().cost_nanousd == 50_000_000
    price_rule_delete(rule)
    assert usage_reprice(start=now - timedelta(days=1), end=now + timedelta(days=1)) == 1
    assert UsageRecord.objects.get().cost_nanousd == 150_000_000
