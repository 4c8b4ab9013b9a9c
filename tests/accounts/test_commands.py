"""The scriptable operations used by operators, demos and tests."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ClientKey, UpstreamAccount
from accounts.services import client_key_hash

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_account_add_list_disable() -> None:
    out = _run(
        "account_add",
        "--label",
        "team-openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--api-key",
        "sk-secret-value",
        "--models",
        "gpt-4o-mini, gpt-4.1",
    )
    assert "team-openai" in out and "sk-secret-value" not in out
    listing = _run("account_list")
    assert "team-openai" in listing and "enabled" in listing and "sk-secret-value" not in listing
    assert "health=idle" in listing and "success(1h)=no attempts" in listing
    _run("account_disable", "team-openai")
    assert not UpstreamAccount.objects.get(label="team-openai").enabled
    _run("account_disable", "team-openai", "--enable")
    assert UpstreamAccount.objects.get(label="team-openai").enabled
    assert UpstreamAccount.objects.get(label="team-openai").model_names == ["gpt-4.1", "gpt-4o-mini"]


def test_account_add_requires_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPSTREAM_API_KEY", raising=False)
    with pytest.raises(CommandError):
        _run("account_add", "--label", "x", "--base-url", "http://127.0.0.1:9/v1", "--models", "m")


def test_key_create_prints_once_and_stores_hash() -> None:
    raw = _run("key_create", "--name", "alice", "--owner", "alice@example.com", "--quiet").strip()
    key = ClientKey.objects.get(name="alice")
    assert key.key_hash == client_key_hash(raw)
    listing = _run("key_list")
    assert "alice" in listing and raw not in listing and key.prefix in listing
    _run("key_disable", "alice")
    assert not ClientKey.objects.get(name="alice").enabled


def test_cooldown_clear_command(transactional_db: None) -> None:
    import os

    from django.conf import settings

    from accounts.models import AccountState
    from accounts.services import account_mark_state
    from audit.models import AdminAction
    from executors.openai_compat.services import account_add_openai_compat
    from state.cooldown import cooldown_start, cooldowns_list, family_scope
    from statestore.factory import call_sync

    if not settings.REDIS_URL:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: the shared-store path must be tested (set REDIS_URL)")
        pytest.skip("no REDIS_URL: the shared-store path of cooldown_clear runs in CI")
    account = account_add_openai_compat(label="c", base_url="http://127.0.0.1:9/v1", api_key="k", model_names=["m"])
    call_sync(lambda s: cooldown_start(s, account_id=account.id, scope=family_scope("m"), seconds=60, reason="429"))
    account_mark_state(account_id=account.id, state=AccountState.AUTH_FAILED, error="401")
    assert "family:m" in _run("cooldown_clear", "c", "--list")
    out = _run("cooldown_clear", "c", "--reactivate")
    assert "cleared 1 cooldown" in out
    assert call_sync(lambda s: cooldowns_list(s, account_id=account.id)) == []
    account.refresh_from_db()
    assert account.state == AccountState.ACTIVE
    logged = AdminAction.objects.filter(target_id=account.id).exclude(action="account.create")
    assert {a.action for a in logged} == {"account.update", "account.cooldowns_clear"}
    assert all(a.actor_label.startswith("manage.py cooldown_clear (") for a in logged)


def test_cooldown_clear_says_plainly_it_cannot_see_the_embedded_store(transactional_db: None, settings: Any) -> None:
    from accounts.models import AccountState
    from accounts.services import account_mark_state
    from executors.openai_compat.services import account_add_openai_compat

    settings.REDIS_URL = ""  # the embedded mode: the server's cooldowns are in its own memory
    account = account_add_openai_compat(label="c", base_url="http://127.0.0.1:9/v1", api_key="k", model_names=["m"])
    for args in (("--list",), ()):
        with pytest.raises(CommandError) as info:
            _run("cooldown_clear", "c", *args)
        assert "can neither see nor clear them" in str(info.value)
        assert "/admin/accounts/upstreamaccount/" in str(info.value)
    # --reactivate still works (the state is in the database), then the command explains the rest.
    account_mark_state(account_id=account.id, state=AccountState.AUTH_FAILED, error="401")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("cooldown_clear", "c", "--reactivate", stdout=out)
    assert "active again" in out.getvalue()
    account.refresh_from_db()
    assert account.state == AccountState.ACTIVE
