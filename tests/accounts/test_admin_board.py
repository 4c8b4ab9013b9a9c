"""The accounts board and key admin through Django's test client."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import ClientKey, UpstreamAccount
from audit.models import AdminAction
from executors.openai_compat.services import account_add_openai_compat

pytestmark = [pytest.mark.live, pytest.mark.django_db]


@pytest.fixture
def boss_client() -> Client:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client()
    client.force_login(boss)
    return client


def test_board_renders_state_and_test_now_action(boss_client: Client, fake_openai: Any) -> None:
    ok = account_add_openai_compat(
        label="good", base_url=fake_openai.url + "/v1", api_key="sk-upstream-A", model_names=["gpt-4o-mini"]
    )
    bad = account_add_openai_compat(
        label="bad", base_url=fake_openai.url + "/v1", api_key="sk-revoked", model_names=["gpt-4o-mini"]
    )
    page = boss_client.get("/admin/accounts/upstreamaccount/")
    assert page.status_code == 200 and b"Accounts board" in page.content and b"API key" in page.content
    resp = boss_client.post(
        "/admin/accounts/upstreamaccount/",
        {"action": "test_accounts", "_selected_action": [ok.pk, bad.pk]},
        follow=True,
    )
    text = resp.content.decode().lower()  # the admin capitalises messages
    assert "good: gpt-4o-mini answered" in text
    assert "bad: gpt-4o-mini: http 401" in text
    bad.refresh_from_db()
    assert bad.last_error and bad.last_error_at is not None
    assert AdminAction.objects.filter(action="account.test").count() == 2


def test_clear_cooldowns_and_disable_are_logged(boss_client: Client, fake_openai: Any) -> None:
    acct = account_add_openai_compat(label="a", base_url=fake_openai.url + "/v1", api_key="k", model_names=["m"])
    for action in ("clear_cooldowns", "disable_accounts"):
        boss_client.post("/admin/accounts/upstreamaccount/", {"action": action, "_selected_action": [acct.pk]})
    assert not UpstreamAccount.objects.get(pk=acct.pk).enabled
    changes = AdminAction.objects.get(action="account.update").changes
    assert changes == {"enabled": [True, False]}


def test_key_created_with_limits_and_shown_once(boss_client: Client) -> None:
    resp = boss_client.post(
        "/admin/accounts/clientkey/add/",
        {
            "name": "ci-bot",
            "owner_label": "ci",
            "enabled": "on",
            "allowed_models": "gpt-4o-mini",
            "requests_per_minute": "20",
            "tokens_per_day": "",
            "budget_tokens": "100000",
            "budget_period": "week",
            "_save": "Save",
        },
    )
    assert resp.status_code == 200, resp.content[:500]
    key = ClientKey.objects.get(name="ci-bot")
    raw = resp.context["raw_key"]
    assert raw.startswith("sk-team-") and "no-store" in resp["Cache-Control"]
    assert (key.requests_per_minute, key.tokens_per_day, key.budget_tokens, key.budget_period) == (
        20,
        None,
        100000,
        "week",
    )
    # never again: the change page does not contain it
    assert raw.encode() not in boss_client.get(f"/admin/accounts/clientkey/{key.pk}/change/").content


def test_provider_config_is_editable_as_json(admin_client: Any) -> None:
    from accounts.models import UpstreamAccount
    from executors.openai_compat.services import account_add_openai_compat

    account = account_add_openai_compat(label="cfg", base_url="http://127.0.0.1:9/v1", api_key="k", model_names=["m"])
    url = f"/admin/accounts/upstreamaccount/{account.pk}/change/"
    form = {
        "label": "cfg",
        "base_url": "http://127.0.0.1:9/v1",
        "model_names": "m",
        "priority": "0",
        "weight": "1",
        "enabled": "on",
        "provider_config": '{"strip_hosted_tools": true}',
    }
    assert admin_client.post(url, form).status_code == 302
    assert UpstreamAccount.objects.get(pk=account.pk).provider_config == {"strip_hosted_tools": True}
    bad = admin_client.post(url, {**form, "provider_config": "[1, 2]"})
    assert bad.status_code == 200 and b"must be a JSON object" in bad.content
