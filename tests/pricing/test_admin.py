"""Price overrides, money budgets and alert channels through the admin forms: the services'
validation shows on the form, saves are logged."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.services import client_key_create, team_create
from alerts.models import AlertChannel
from audit.models import AdminAction
from pricing.models import MoneyBudget, PriceRule

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123"))
    return client


def test_price_override_form(boss: Client) -> None:
    bad = boss.post("/admin/pricing/pricerule/add/", {"model": "acme-7b", "mode": "custom"})
    assert bad.status_code == 200 and b"needs at least an input or an output rate" in bad.content
    ok = boss.post(
        "/admin/pricing/pricerule/add/",
        {"model": " Acme-7B ", "mode": "custom", "input_per_mtok": "0.4", "output_per_mtok": "1.2"},
    )
    assert ok.status_code == 302
    assert PriceRule.objects.get().model == "acme-7b"  # normalised by the service's validator
    assert AdminAction.objects.filter(action="price_rule_create", actor_label="boss").exists()
    listing = boss.get("/admin/pricing/pricerule/")
    assert b"acme-7b" in listing.content and b"every account" in listing.content


def test_money_budget_form_and_spend_column(boss: Client) -> None:
    team = team_create(name="Platform")
    key, _ = client_key_create(name="k", team_id=team.pk)
    neither = boss.post("/admin/pricing/moneybudget/add/", {"usd": "5", "period": "month"})
    assert neither.status_code == 200 and b"belongs to one key or one team" in neither.content
    assert (
        boss.post("/admin/pricing/moneybudget/add/", {"team": team.pk, "usd": "50", "period": "month"}).status_code
        == 302
    )
    assert boss.post("/admin/pricing/moneybudget/add/", {"key": key.pk, "usd": "5", "period": "day"}).status_code == 302
    twice = boss.post("/admin/pricing/moneybudget/add/", {"team": team.pk, "usd": "9", "period": "month"})
    assert twice.status_code == 200 and b"already has a money budget for this period" in twice.content
    assert MoneyBudget.objects.count() == 2
    listing = boss.get("/admin/pricing/moneybudget/")
    assert b"$50.00" in listing.content and b"$0.00 (0 %)" in listing.content


def test_alert_channel_form(boss: Client) -> None:
    bad = boss.post("/admin/alerts/alertchannel/add/", {"kind": "email", "target": "nobody", "enabled": "on"})
    assert bad.status_code == 200 and b"email addresses" in bad.content
    ok = boss.post(
        "/admin/alerts/alertchannel/add/", {"kind": "email", "target": "a@example.com ,b@example.com", "enabled": "on"}
    )
    assert ok.status_code == 302 and AlertChannel.objects.get().target == "a@example.com, b@example.com"
