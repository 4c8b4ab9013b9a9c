"""Codex sign-in (PKCE, device code, auth.json) and the rotating refresh with its race."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections

from accounts.models import AccountState, Credential, UpstreamAccount
from executors.codex.jwt import chatgpt_claims
from executors.codex.services import (
    CodexLoginError,
    CodexRefreshError,
    codex_accounts_refresh_due,
    codex_device_complete,
    codex_device_start,
    codex_import_auth_json,
    codex_pkce_complete,
    codex_pkce_start,
    codex_token_refresh,
)
from infra.db import db_call
from statestore import get_store
from tests.executors.codex.conftest import import_account
from tests.fakes.codex import make_jwt

pytestmark = pytest.mark.django_db(transaction=True)


def _secret(account_id: int) -> dict[str, Any]:
    return dict(Credential.objects.get(account_id=account_id).secret)


# ----------------------------------------------------------------------------- sign-in


def test_pkce_paste_callback_creates_account(codex_fake: Any) -> None:
    # given a pending PKCE login
    start = codex_pkce_start(
        label="pkce", base_url=codex_fake.url + "/backend-api/codex", provider_config={"auth_url": codex_fake.url}
    )
    q = parse_qs(urlparse(start.url).query)
    assert q["redirect_uri"] == ["http://localhost:1455/auth/callback"]
    assert q["code_challenge_method"] == ["S256"] and q["originator"] == ["codex_cli_rs"]
    assert q["scope"] == ["openid profile email offline_access"] and "%20" in start.url
    # when the browser signs in and lands on the dead localhost page
    redirect = httpx.get(start.url, follow_redirects=False)
    assert redirect.status_code == 302
    account = codex_pkce_complete(callback_url=redirect.headers["location"])
    # then the account exists with decoded claims and its own installation id
    secret = _secret(account.id)
    assert account.provider == "codex" and secret["account_id"] == "acc-fake-0001"
    assert secret["plan_type"] == "plus" and secret["email"] == "dev@example.com"
    assert secret["installation_id"] == str(account.installation_id)
    exchange = codex_fake.app.token_form_log[-1]
    # docs/protocols/codex.md#sign-in-chatgpt-oauth
    assert exchange["grant_type"] == "authorization_code" and "state" not in exchange
    # a replayed callback is refused (the pending state is single-use)
    with pytest.raises(CodexLoginError):
        codex_pkce_complete(callback_url=redirect.headers["location"])


def test_pkce_callback_errors() -> None:
    with pytest.raises(Exception, match="missing_codex_entitlement"):
        codex_pkce_complete(
            callback_url="http://localhost:1455/auth/callback?error=access_denied&error_description=missing_codex_entitlement"
        )
    with pytest.raises(CodexLoginError, match="state"):
        codex_pkce_complete(callback_url="http://localhost:1455/auth/callback?code=x&state=unknown")


def test_device_code_flow_polls_until_approved(codex_fake: Any) -> None:
    codex_fake.app.device_pending_polls = 2
    code = codex_device_start(
        label="dev", base_url=codex_fake.url + "/backend-api/codex", provider_config={"auth_url": codex_fake.url}
    )
    assert code.interval == 1.0 and code.user_code  # "interval" arrives as a string
    sleeps: list[float] = []
    account = codex_device_complete(device_auth_id=code.device_auth_id, sleep=sleeps.append)
    assert sleeps == [1.0, 1.0]  # two 403 "pending" answers, then success
    assert _secret(account.id)["account_id"] == "acc-fake-0001"


def test_import_auth_json_and_mismatch_refusal(codex_fake: Any) -> None:
    account = import_account(codex_fake, label="imp")
    secret = _secret(account.id)
    assert secret["refresh_token"].startswith("rt_") and secret["expires_at"] > time.time()
    # id token and access token naming different ChatGPT accounts are refused (docs/protocols/codex.md#token-claims)
    data = codex_fake.app.auth_json()
    data["tokens"]["id_token"] = make_jwt({"https://api.openai.com/auth": {"chatgpt_account_id": "other"}})
    data["tokens"].pop("account_id")
    with pytest.raises(CodexLoginError, match=r"different|names"):
        codex_import_auth_json(data=data, label="bad")
    # ...unless the operator pins one
    # (the same ChatGPT account as "imp": a duplicate needs the explicit confirmation)
    pinned = codex_import_auth_json(data=data, label="pinned", pin_account_id="acc-fake-0001", allow_duplicate=True)
    assert _secret(pinned.id)["account_id"] == "acc-fake-0001"


def test_commands_import_and_login_device(codex_fake: Any, tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(codex_fake.app.auth_json()))
    out = StringIO()
    call_command(
        "codex_import",
        "--file",
        str(path),
        "--label",
        "cmd",
        "--base-url",
        codex_fake.url + "/backend-api/codex",
        "--auth-url",
        codex_fake.url,
        stdout=out,
    )
    assert "imported" in out.getvalue() and "rt_" not in out.getvalue()
    from audit.models import AdminAction

    created = AdminAction.objects.get(action="account.create", target_label="cmd")
    assert created.actor_label.startswith("manage.py codex_import (") and "rt_" not in str(created.changes)
    codex_fake.app.device_pending_polls = 0
    out = StringIO()
    # the same ChatGPT account again, under a new label: refused unless confirmed
    with pytest.raises(CommandError, match="already added as account 'cmd'"):
        call_command("codex_login", "--device", "--label", "cmd2", "--auth-url", codex_fake.url, stdout=out)
    call_command(
        "codex_login", "--device", "--label", "cmd2", "--auth-url", codex_fake.url, "--allow-duplicate", stdout=out
    )
    assert "enter the code" in out.getvalue() and "signed in" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("codex_import", "--file", str(tmp_path / "missing.json"), "--label", "x")


def test_command_login_pkce_reads_pasted_url(codex_fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    out = StringIO()

    class Stdin:
        # Plays the operator: opens the printed URL, pastes where the browser landed.
        def readline(self) -> str:
            url = out.getvalue().splitlines()[1]
            return httpx.get(url).headers["location"] + "\n"

    monkeypatch.setattr("sys.stdin", Stdin())
    call_command("codex_login", "--pkce", "--label", "p", "--auth-url", codex_fake.url, stdout=out)
    assert "signed in" in out.getvalue()
    assert UpstreamAccount.objects.get(label="p").provider == "codex"


def test_jwt_claims_nested_and_flat() -> None:
    nested = make_jwt(
        {
            "exp": 10,
            "email": "a@b",
            "https://api.openai.com/auth": {"chatgpt_account_id": "x", "chatgpt_plan_type": "pro"},
        }
    )
    c = chatgpt_claims(nested)
    assert (c.account_id, c.plan_type, c.email, c.expires_at) == ("x", "pro", "a@b", 10.0)
    flat = make_jwt(
        {"https://api.openai.com/auth.chatgpt_account_id": "y", "https://api.openai.com/profile": {"email": "p@q"}}
    )
    assert (chatgpt_claims(flat).account_id, chatgpt_claims(flat).email) == ("y", "p@q")


# ----------------------------------------------------------------------------- refresh


async def test_refresh_rotates_and_persists_before_use(codex_fake: Any) -> None:
    account = await db_call(import_account, codex_fake, access_ttl=60)  # expires within the inline window
    before = await db_call(_secret, account.id)
    outcome = await codex_token_refresh(store=get_store(), account_id=account.id)
    assert outcome.refreshed and outcome.reason == "refreshed"
    stored = await db_call(_secret, account.id)
    assert stored["refresh_token"] != before["refresh_token"] == codex_fake.app.token_form_log[-1]["refresh_token"]
    assert stored["access_token"] == outcome.secret["access_token"]  # persisted = what callers get
    assert stored["expires_at"] > time.time() + 3600
    # JSON body, docs/protocols/codex.md#token-refresh
    assert codex_fake.app.token_form_log[-1]["grant_type"] == "refresh_token"
    # fresh now: a second call does not touch the auth server
    again = await codex_token_refresh(store=get_store(), account_id=account.id)
    assert not again.refreshed and again.reason == "fresh" and codex_fake.app.refresh_count == 1


async def test_concurrent_refreshes_make_one_upstream_call(codex_fake: Any) -> None:
    account = await db_call(import_account, codex_fake)
    stale = (await db_call(_secret, account.id))["access_token"]
    store = get_store()
    # Two workers saw the same 401 at once: both ask to replace the same stale token.
    results = await asyncio.gather(
        codex_token_refresh(store=store, account_id=account.id, stale_access_token=stale),
        codex_token_refresh(store=store, account_id=account.id, stale_access_token=stale),
    )
    assert codex_fake.app.refresh_count == 1
    assert sorted(r.reason for r in results) == ["refreshed", "sibling"]
    assert results[0].secret["access_token"] == results[1].secret["access_token"] != stale


async def test_reused_refresh_token_after_sibling_rotation_uses_stored_tokens(codex_fake: Any) -> None:
    account = await db_call(import_account, codex_fake)
    sent = (await db_call(_secret, account.id))["refresh_token"]
    sibling_tokens: dict[str, Any] = {}

    def sibling_wins(token: str) -> None:
        # Another holder (its lock expired) rotated this token a moment earlier and stored
        # the result: our call now reuses a dead token.
        if token != sent or sibling_tokens:
            return
        codex_fake.app.refresh[token] = (codex_fake.app.refresh[token][0], False)
        sibling_tokens.update(codex_fake.app.issue_tokens())

        def store_sibling() -> None:
            cred = Credential.objects.get(account_id=account.id)
            cred.secret = {
                **cred.secret,
                "access_token": sibling_tokens["access_token"],
                "refresh_token": sibling_tokens["refresh_token"],
            }
            cred.save()
            close_old_connections()

        # The hook runs on the fake's event loop: do the sibling's DB write in a thread.
        worker = threading.Thread(target=store_sibling)
        worker.start()
        worker.join()

    codex_fake.app.on_refresh = sibling_wins
    outcome = await codex_token_refresh(store=get_store(), account_id=account.id, force=True)
    assert outcome.reason == "sibling" and outcome.secret["access_token"] == sibling_tokens["access_token"]
    state = await db_call(lambda: UpstreamAccount.objects.get(id=account.id).state)
    assert state == AccountState.ACTIVE  # not declared dead


async def test_reused_refresh_token_without_sibling_marks_auth_failed(codex_fake: Any) -> None:
    account = await db_call(import_account, codex_fake)
    sent = (await db_call(_secret, account.id))["refresh_token"]
    codex_fake.app.refresh[sent] = (codex_fake.app.refresh[sent][0], False)  # rotated by a live CLI
    with pytest.raises(CodexRefreshError) as info:
        await codex_token_refresh(store=get_store(), account_id=account.id, force=True)
    assert info.value.terminal and info.value.code == "refresh_token_reused"
    row = await db_call(lambda: UpstreamAccount.objects.get(id=account.id))
    assert row.state == AccountState.AUTH_FAILED and "refresh_token_reused" in row.last_error


def test_refresh_ahead_service_and_task(codex_fake: Any) -> None:
    soon = import_account(codex_fake, label="soon", access_ttl=3600)  # inside the 1-day refresh-ahead window
    later = import_account(codex_fake, label="later")  # 10 days left
    results = codex_accounts_refresh_due()
    assert results == {soon.id: "refreshed"} and later.id not in results
    from executors.codex.tasks import codex_refresh_due_task

    assert codex_refresh_due_task() == {}  # nothing due any more
    from proxy_project.celery import app

    app.finalize()  # the provider's periodic tasks join the beat schedule then
    assert any(e["task"] == codex_refresh_due_task.name for e in app.conf.beat_schedule.values())
