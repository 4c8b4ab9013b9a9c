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
        "provider_config": '{"chat_developer_role": "developer"}',
    }
    assert admin_client.post(url, form).status_code == 302
    assert UpstreamAccount.objects.get(pk=account.pk).provider_config == {"chat_developer_role": "developer"}
    bad = admin_client.post(url, {**form, "provider_config": "[1, 2]"})
    assert bad.status_code == 200 and b"must be a JSON object" in bad.content


def test_a_new_api_key_saved_on_the_change_page_replaces_the_credential(admin_client: Any) -> None:
    from accounts.models import Credential

    account = account_add_openai_compat(
        label="k", base_url="http://127.0.0.1:9/v1", api_key="sk-old", model_names=["m"]
    )
    form = {
        "label": "k",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "sk-new-value",
        "model_names": "m",
        "priority": "0",
        "weight": "1",
        "enabled": "on",
        "provider_config": "{}",
    }
    resp = admin_client.post(f"/admin/accounts/upstreamaccount/{account.pk}/change/", form)
    assert resp.status_code == 302
    assert Credential.objects.get(account=account).secret == {"api_key": "sk-new-value"}
    logged = AdminAction.objects.get(action="account.credential_replace")
    assert logged.actor_label == "admin" and "sk-new-value" not in str(logged.changes)
    # Empty keeps the stored key.
    admin_client.post(f"/admin/accounts/upstreamaccount/{account.pk}/change/", {**form, "api_key": ""})
    assert Credential.objects.get(account=account).secret == {"api_key": "sk-new-value"}


def test_sign_in_accounts_offer_no_api_key_field(admin_client: Any) -> None:
    from accounts.models import Credential
    from executors.gitlab import CredentialKind

    account = account_add_openai_compat(label="o", base_url="http://127.0.0.1:9/v1", api_key="x", model_names=["m"])
    Credential.objects.filter(account=account).update(kind=CredentialKind.OAUTH)
    page = admin_client.get(f"/admin/accounts/upstreamaccount/{account.pk}/change/")
    assert page.status_code == 200 and b'name="api_key"' not in page.content


def test_deleting_accounts_and_keys_is_logged_with_the_admin(admin_client: Any) -> None:
    from accounts.services import client_key_create

    account = account_add_openai_compat(label="gone", base_url="http://127.0.0.1:9/v1", api_key="x", model_names=["m"])
    key, _ = client_key_create(name="old-key")
    admin_client.post(f"/admin/accounts/upstreamaccount/{account.pk}/delete/", {"post": "yes"})
    admin_client.post(
        "/admin/accounts/clientkey/", {"action": "delete_selected", "_selected_action": [key.pk], "post": "yes"}
    )
    assert not UpstreamAccount.objects.exists() and not ClientKey.objects.exists()
    deletes = {a.action: a.actor_label for a in AdminAction.objects.filter(action__endswith=".delete")}
    assert deletes == {"account.delete": "admin", "key.delete": "admin"}


def _attempt_record(account: UpstreamAccount, *, ok: bool, minutes_ago: float = 1) -> None:
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import UsageRecord

    attempt = {"account": account.label, "model": "m", "status": 200 if ok else 502, "ms": 1}
    if not ok:
        attempt["code"] = "upstream_connect_error"
    UsageRecord.objects.create(
        request_id=uuid.uuid4(),
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        account_id=account.pk,
        account_label=account.label,
        surface="chat",
        outcome="ok" if ok else "upstream_error",
        status_code=200 if ok else 502,
        attempts=1,
        attempt_log=[attempt],
        error_code="" if ok else "upstream_connect_error",
        error_message="" if ok else '{"detail": "connection refused"}',
    )


def test_board_sorts_worst_first_and_filters_by_health(boss_client: Client) -> None:
    from accounts.models import AccountState
    from accounts.services import account_mark_state

    healthy, failing, human = (
        account_add_openai_compat(label=name, base_url="http://127.0.0.1:9/v1", api_key="k", model_names=["m"])
        for name in ("a-healthy", "b-failing", "c-human")
    )
    _attempt_record(healthy, ok=True)
    for minute in (1, 2, 3):
        _attempt_record(failing, ok=False, minutes_ago=minute)
    account_mark_state(account_id=human.pk, state=AccountState.AUTH_FAILED, error="401 revoked")
    page = boss_client.get("/admin/accounts/upstreamaccount/")
    order = [obj.label for obj in page.context["cl"].result_list]
    assert order == ["c-human", "b-failing", "a-healthy"]
    text = page.content.decode()
    assert 'data-status="failing"' in text and "3 failed in a row" in text and "0 % of 3" in text
    for value, expected in (("failing", ["b-failing"]), ("needs_human", ["c-human"]), ("cooling", [])):
        filtered = boss_client.get(f"/admin/accounts/upstreamaccount/?health={value}")
        assert [o.label for o in filtered.context["cl"].result_list] == expected
    # The detail page lists the failed attempts as a table, not as JSON.
    detail = boss_client.get(f"/admin/accounts/upstreamaccount/{failing.pk}/change/").content.decode()
    assert '<table class="failures">' in detail and "upstream_connect_error" in detail
    assert '"status": 502' not in detail and "[{" not in detail


def test_far_expiries_read_in_years_not_hours(boss_client: Client) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.display import duration_human
    from accounts.models import Credential

    account = account_add_openai_compat(label="pat", base_url="http://127.0.0.1:9/v1", api_key="k", model_names=["m"])
    Credential.objects.filter(account=account).update(expires_at=timezone.now() + timedelta(hours=631817, minutes=52))
    page = boss_client.get(f"/admin/accounts/upstreamaccount/{account.pk}/change/").content.decode()
    assert "(in 72 years)" in page and "631817h" not in page
    assert [duration_human(s) for s in (42, 125, 3 * 3600 + 60, 3 * 86400, 90 * 86400)] == [
        "42s",
        "2m05s",
        "3h01m",
        "3 days",
        "3 months",
    ]
