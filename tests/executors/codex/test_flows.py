"""Codex (ChatGPT sign-in) add-account flows in the admin (paste-callback PKCE, device code,
auth.json import), driven through Django's test client against the fake ChatGPT auth server +
Codex backend, and the board's "test now" / "refresh now" actions on the accounts they create."""

from __future__ import annotations

import html
import json
import re
from typing import Any, cast

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.flows import flows_by_provider
from accounts.models import AccountState, UpstreamAccount
from audit.models import AdminAction
from statestore.factory import call_sync
from tests.fakes.codex import make_jwt

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BASE = "/admin/accounts/upstreamaccount/guided/"
BOARD = "/admin/accounts/upstreamaccount/"
CALLBACK = "http://localhost:1455/auth/callback"


@pytest.fixture
def admin_client() -> Client:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client()
    client.force_login(boss)
    return client


def _text(response: Any) -> str:
    # Messages pass through HTML escaping (apostrophes, quotes): compare on the unescaped page.
    return html.unescape(response.content.decode())


def _settings(fake: Any, **extra: Any) -> dict[str, Any]:
    return {
        "label": "codex",
        "models": "gpt-5.5,gpt-5.4",
        "base_url": fake.url + "/backend-api/codex",
        "auth_url": fake.url,
        **extra,
    }


def _board_action(client: Client, action: str, account: UpstreamAccount) -> str:
    response = client.post(BOARD, {"action": action, "_selected_action": [account.pk]}, follow=True)
    # Only the messages: the rest of the board would match labels too.
    found = re.search(r'<ul class="messagelist">(.*?)</ul>', _text(response), re.S)
    return found.group(1) if found else ""


# ------------------------------------------------------------------------------ registry


def test_codex_flows_are_registered_with_clear_labels(admin_client: Client) -> None:
    flows = {f.key: f for f in flows_by_provider()["codex"]}
    assert list(flows) == ["codex.pkce", "codex.device", "codex.import"]
    page = _text(admin_client.get(BASE))
    for flow in flows.values():
        assert flow.title in page
    assert "Not available yet" not in page.split("OpenAI Codex")[1][:400]
    form = _text(admin_client.get(BASE + "codex.import/"))
    assert 'id="codex-auth-file"' in form and 'name="auth_json"' in form
    assert 'value="https://chatgpt.com/backend-api/codex"' in form and 'value="https://auth.openai.com"' in form


# -------------------------------------------------------------------------------- import


def _import(client: Client, fake: Any, auth_json: str, **extra: Any) -> Any:
    url = BASE + "codex.import/"
    client.get(url)
    return client.post(url, _settings(fake, auth_json=auth_json, **extra))


def test_import_adds_an_account(admin_client: Client, codex_fake: Any) -> None:
    data = codex_fake.app.auth_json()
    done = _import(admin_client, codex_fake, json.dumps(data))
    assert done.status_code == 302 and done["location"] == BOARD
    account = UpstreamAccount.objects.get(label="codex")
    secret = cast(dict[str, Any], account.credential.secret)
    assert account.provider == "codex" and account.credential.kind == "chatgpt"
    assert account.state == AccountState.ACTIVE and account.model_names == ["gpt-5.4", "gpt-5.5"]
    assert secret["account_id"] == "acc-fake-0001" and secret["email"] == "dev@example.com"
    assert secret["refresh_token"] == data["tokens"]["refresh_token"]
    assert account.provider_config["auth_url"] == codex_fake.url
    assert data["tokens"]["access_token"] not in str(AdminAction.objects.values_list("changes", flat=True))
    assert "flow" not in "".join(admin_client.session.keys())  # flow state (with the tokens) dropped


def _mismatched(fake: Any) -> str:
    data = fake.app.auth_json()
    other = make_jwt({"email": "x@example.com", "https://api.openai.com/auth": {"chatgpt_account_id": "acc-other"}})
    data["tokens"]["id_token"] = other
    del data["tokens"]["account_id"]  # an account_id in the file would pin it already
    return json.dumps(data)


@pytest.mark.parametrize(
    ("content", "message", "field"),
    [
        ("{not json", "This is not valid JSON (line 1, column 2: Expecting property name", "auth_json"),
        ("[1, 2]", "This JSON is not an object; auth.json starts with {.", "auth_json"),
        (
            '{"hello": 1}',
            "No ChatGPT tokens found (expected auth.json `tokens`, a flat token file or a bundle).",
            "auth_json",
        ),
        (
            '{"auth_mode": "apikey", "OPENAI_API_KEY": "sk-x", "tokens": {}}',
            "Auth.json is in 'apikey' mode, not ChatGPT sign-in.",
            "auth_json",
        ),
        (
            "mismatch",
            "The access token names ChatGPT account acc-fake-0001 but the id token names acc-other; "
            "pin the intended one in the “ChatGPT account id” field.",
            "account_id",
        ),
    ],
)
def test_import_names_each_failure(
    admin_client: Client, codex_fake: Any, content: str, message: str, field: str
) -> None:
    content = _mismatched(codex_fake) if content == "mismatch" else content
    page = _import(admin_client, codex_fake, content)
    text = _text(page)
    assert page.status_code == 200 and message in text, text[:3000]
    # shown on the field it is about
    assert re.search(rf'id="id_{field}_error"><li>{re.escape(message[:40])}', text), text[:3000]
    assert not UpstreamAccount.objects.exists()
    # the pasted tokens are never rendered back into the page
    assert 'name="auth_json"' in text and '"tokens"' not in text and "rt_" not in text


def test_import_mismatch_can_be_pinned(admin_client: Client, codex_fake: Any) -> None:
    done = _import(admin_client, codex_fake, _mismatched(codex_fake), account_id="acc-fake-0001")
    assert done.status_code == 302
    secret = cast(dict[str, Any], UpstreamAccount.objects.get(label="codex").credential.secret)
    assert secret["account_id"] == "acc-fake-0001"


def test_import_refuses_a_label_of_another_provider(admin_client: Client, codex_fake: Any) -> None:
    from executors.openai_compat.services import account_add_openai_compat

    account_add_openai_compat(
        label="codex", base_url="https://api.example.com/v1", api_key="sk-x", model_names=["m"], actor=None
    )
    text = _text(_import(admin_client, codex_fake, json.dumps(codex_fake.app.auth_json())))
    assert re.search(r'id="id_label_error"><li>The label is used by a [^<]+ account\.', text)
    assert UpstreamAccount.objects.filter(provider="codex").count() == 0


# ---------------------------------------------------------------------------------- PKCE


def _pkce_start(client: Client, fake: Any, **extra: Any) -> tuple[str, str]:
    url = BASE + "codex.pkce/"
    client.get(url)
    page = _text(client.post(url, _settings(fake, **extra)))
    match = re.search(r'id="codex-authorize-url" href="([^"]+)"', page)
    assert match, page[:3000]
    assert 'name="callback"' in page and CALLBACK in page
    return url, match.group(1)


def _sign_in(authorize_url: str) -> str:
    """What the person's browser does: ChatGPT redirects to the dead localhost callback."""
    response = httpx.get(authorize_url, follow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def test_pkce_flow_adds_an_account(admin_client: Client, codex_fake: Any) -> None:
    url, authorize = _pkce_start(admin_client, codex_fake, workspace_id="ws-team")
    assert authorize.startswith(codex_fake.url + "/oauth/authorize?")
    assert "code_challenge_method=S256" in authorize and "allowed_workspace_id=ws-team" in authorize
    callback = _sign_in(authorize)
    assert callback.startswith(CALLBACK + "?code=")
    done = admin_client.post(url, {"callback": callback})
    assert done.status_code == 302 and done["location"] == BOARD
    account = UpstreamAccount.objects.get(label="codex")
    assert account.credential.kind == "chatgpt" and account.state == AccountState.ACTIVE
    assert codex_fake.app.token_form_log[-1]["grant_type"] == "authorization_code"


def test_pkce_flow_paste_mistakes_keep_the_link(admin_client: Client, codex_fake: Any) -> None:
    url, authorize = _pkce_start(admin_client, codex_fake)
    state = re.search(r"state=([^&]+)", authorize).group(1)  # type: ignore[union-attr]
    cases = [
        ("http://localhost:1455/", "That address has no code and state. Copy the whole address"),
        (f"{CALLBACK}?code=abc&state=someone-else", "That address belongs to a different sign-in"),
        (
            f"{CALLBACK}?error=access_denied&error_description=denied&state={state}",
            "ChatGPT did not complete the sign-in: access_denied. Open the link again and approve.",
        ),
        (
            f"{CALLBACK}?error=access_denied&error_description=missing_codex_entitlement&state={state}",
            "Codex is not enabled for this ChatGPT workspace (missing_codex_entitlement).",
        ),
    ]
    for pasted, message in cases:
        text = _text(admin_client.post(url, {"callback": pasted}))
        assert message in text, text[:3000]
        assert 'id="flow-restart"' not in text
    # none of them used the link up: the real callback still works
    done = admin_client.post(url, {"callback": _sign_in(authorize)})
    assert done.status_code == 302


def test_pkce_flow_bad_code_uses_the_link_up(admin_client: Client, codex_fake: Any) -> None:
    url, authorize = _pkce_start(admin_client, codex_fake)
    state = re.search(r"state=([^&]+)", authorize).group(1)  # type: ignore[union-attr]
    page = _text(admin_client.post(url, {"callback": f"{CALLBACK}?code=ac_forged&state={state}"}))
    assert (
        "ChatGPT's auth server refused the authorization code (HTTP 400) [invalid_grant]. "
        "This sign-in link is used up: start again." in page
    )
    assert "ChatGPT said: Invalid authorization code" in page and 'id="flow-restart"' in page
    again = _text(admin_client.post(url, {"callback": _sign_in(authorize)}))
    assert "This sign-in link was used up by the last attempt. Start again for a new link." in again
    assert not UpstreamAccount.objects.exists()


def test_pkce_flow_expired_link(admin_client: Client, codex_fake: Any) -> None:
    url, authorize = _pkce_start(admin_client, codex_fake)
    state = re.search(r"state=([^&]+)", authorize).group(1)  # type: ignore[union-attr]
    call_sync(lambda store: store.delete(f"codex:pkce:{state}"))  # what the 15-minute TTL does
    page = _text(admin_client.post(url, {"callback": _sign_in(authorize)}))
    assert "This sign-in link has expired or was already used (links last 15 minutes and work once)." in page


# ---------------------------------------------------------------------------- device code


def _device_start(client: Client, fake: Any, **extra: Any) -> tuple[str, str]:
    url = BASE + "codex.device/"
    client.get(url)
    page = _text(client.post(url, _settings(fake, **extra)))
    match = re.search(r'id="codex-user-code"[^>]*>([0-9A-F-]+)<', page)
    assert match, page[:3000]
    assert f'href="{fake.url}/codex/device"' in page and "I approved it — continue" in page
    assert 'id="codex-poll-seconds">2<' in page  # the fake says 1 s; never faster than 2 s
    return url, match.group(1)


def test_device_flow_pending_then_approved(admin_client: Client, codex_fake: Any) -> None:
    codex_fake.app.device_pending_polls = 2
    url, code = _device_start(admin_client, codex_fake)
    # not approved yet: said in words, the page stays and keeps polling (one poll per request)
    for _ in range(2):
        pending = _text(admin_client.post(url, {}))
        assert "Not approved yet: ChatGPT says the code is still pending." in pending
        assert f"enter {code}" in pending and "setTimeout" in pending
    done = admin_client.post(url, {})
    assert done.status_code == 302 and done["location"] == BOARD
    account = UpstreamAccount.objects.get(label="codex")
    assert account.credential.kind == "chatgpt" and account.state == AccountState.ACTIVE
    assert codex_fake.app.token_form_log[-1]["redirect_uri"].endswith("/deviceauth/callback")


def test_device_flow_expired_code_ends(admin_client: Client, codex_fake: Any) -> None:
    codex_fake.app.device_pending_polls = 100
    url, _code = _device_start(admin_client, codex_fake)
    (device_id,) = codex_fake.app.devices
    call_sync(lambda store: store.delete(f"codex:device:{device_id}"))  # what the 15-minute TTL does
    page = _text(admin_client.post(url, {}))
    assert "The code expired before it was approved (codes last 15 minutes). Start again." in page
    assert "setTimeout" not in page and 'id="flow-restart"' in page
    again = _text(admin_client.post(url, {}))
    assert "This login attempt has ended. Start again to get a new code." in again
    assert not UpstreamAccount.objects.exists()


def test_device_flow_token_exchange_refused(admin_client: Client, codex_fake: Any) -> None:
    codex_fake.app.device_pending_polls = 0
    url, _code = _device_start(admin_client, codex_fake)
    # the approval's authorization code is gone by the time we exchange it
    codex_fake.app.codes = _Forgetful()
    page = _text(admin_client.post(url, {}))
    assert "ChatGPT's auth server refused the device login (HTTP 400) [invalid_grant]. Start again." in page
    assert "ChatGPT said: Invalid authorization code" in page and 'id="flow-restart"' in page
    assert not UpstreamAccount.objects.exists()


class _Forgetful(dict[str, Any]):
    """A code store that drops every code it is given (an auth server that lost the grant)."""

    def __setitem__(self, key: str, value: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("auth_url", "message"),
    [
        ("http://127.0.0.1:9", "Could not reach the ChatGPT auth server at http://127.0.0.1:9 (ConnectError)."),
        ("{fake}/elsewhere", "Device-code sign-in is disabled on this auth server (HTTP 404)."),
    ],
)
def test_device_flow_start_failures(admin_client: Client, codex_fake: Any, auth_url: str, message: str) -> None:
    url = BASE + "codex.device/"
    admin_client.get(url)
    page = _text(admin_client.post(url, _settings(codex_fake, auth_url=auth_url.format(fake=codex_fake.url))))
    assert message in page, page[:3000]
    assert 'id="codex-user-code"' not in page


# ------------------------------------------------------------------------ board actions


def test_board_test_and_refresh_work_for_codex_accounts(admin_client: Client, codex_fake: Any) -> None:
    _import(admin_client, codex_fake, json.dumps(codex_fake.app.auth_json()))
    account = UpstreamAccount.objects.get(label="codex")

    tested = _board_action(admin_client, "test_accounts", account)
    assert "Codex: gpt-5.4 answered" in tested, tested

    old_refresh = cast(dict[str, Any], account.credential.secret)["refresh_token"]
    refreshed = _board_action(admin_client, "refresh_accounts", account)
    assert "Codex: ChatGPT tokens refreshed (access token valid until 20" in refreshed, refreshed
    account.credential.refresh_from_db()
    assert cast(dict[str, Any], account.credential.secret)["refresh_token"] != old_refresh
    assert codex_fake.app.refresh_count == 1  # forced: the token was far from expiry
    assert "Codex: gpt-5.4 answered" in _board_action(admin_client, "test_accounts", account)

    # a dead refresh token: the reason, what to do, and the account marked
    codex_fake.app.refresh.clear()
    failed = _board_action(admin_client, "refresh_accounts", account)
    assert "Codex: refresh failed: refresh rejected: Your refresh token is invalid." in failed, failed
    assert "sign in again" in failed
    account.refresh_from_db()
    assert account.state == AccountState.AUTH_FAILED


def test_relogin_keeps_the_installation_id(admin_client: Client, codex_fake: Any) -> None:
    _import(admin_client, codex_fake, json.dumps(codex_fake.app.auth_json()))
    first = UpstreamAccount.objects.get(label="codex")
    url, authorize = _pkce_start(admin_client, codex_fake)
    assert admin_client.post(url, {"callback": _sign_in(authorize)}).status_code == 302
    again = UpstreamAccount.objects.get(label="codex")
    assert again.pk == first.pk and again.installation_id == first.installation_id


def test_board_test_uses_the_accounts_provider_config(admin_client: Client, codex_fake: Any) -> None:
    """ "Test now" sends what a real request would: the account's own settings, not defaults
    (it used to build the account view by hand and drop provider_config)."""
    _import(admin_client, codex_fake, json.dumps(codex_fake.app.auth_json()))
    account = UpstreamAccount.objects.get(label="codex")
    account.provider_config = {
        **account.provider_config,
        "client_version": "0.170.2",
        "default_instructions": "Probe from the board.",
    }
    account.save(update_fields=["provider_config"])

    assert "Codex: gpt-5.4 answered" in _board_action(admin_client, "test_accounts", account)
    sent = [r for r in codex_fake.requests if r["path"] == "/backend-api/codex/responses"][-1]
    assert sent["headers"]["user-agent"].startswith("codex_cli_rs/0.170.2 ")
    assert sent["json"]["instructions"] == "Probe from the board."


def test_the_same_chatgpt_account_twice_is_refused_unless_confirmed(admin_client: Client, codex_fake: Any) -> None:
    # the first, through the device flow: in the action log with the admin who added it
    codex_fake.app.device_pending_polls = 0
    url, _code = _device_start(admin_client, codex_fake)
    assert admin_client.post(url, {}).status_code == 302
    created = AdminAction.objects.get(action="account.create", target_label="codex")
    assert created.actor_label == "boss"
    # the same ChatGPT account under another label: refused, saying which account has it
    page = _text(_import(admin_client, codex_fake, json.dumps(codex_fake.app.auth_json()), label="codex-2"))
    assert "ChatGPT account acc-fake-0001 is already added as account 'codex'" in page
    assert not UpstreamAccount.objects.filter(label="codex-2").exists()
    # ticked: added, and logged too
    done = _import(
        admin_client, codex_fake, json.dumps(codex_fake.app.auth_json()), label="codex-2", allow_duplicate="on"
    )
    assert done.status_code == 302
    assert AdminAction.objects.get(action="account.create", target_label="codex-2").actor_label == "boss"
    # and a device sign-in to it, refused after the exchange, says how to add it anyway
    url, _code = _device_start(admin_client, codex_fake, label="codex-3")
    page = _text(admin_client.post(url, {}))
    assert "already added as account" in page and "tick “Add even if already added”" in page
