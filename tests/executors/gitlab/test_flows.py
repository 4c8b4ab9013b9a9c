"""GitLab Duo add-account flows in the admin (PAT, OAuth device grant, OAuth PKCE), driven
through Django's test client against the fake GitLab instance + AI gateway, and the board's
"test now" / "refresh now" actions on the accounts they create."""

from __future__ import annotations

import html
import re
from typing import Any, cast

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.flows import flows_by_provider
from accounts.models import AccountState, UpstreamAccount
from audit.models import AdminAction
from tests.executors.gitlab.conftest import CLIENT_ID, PAT, REDIRECT
from tests.fakes.gitlab import GitLabFakes

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BASE = "/admin/accounts/upstreamaccount/guided/"
BOARD = "/admin/accounts/upstreamaccount/"


@pytest.fixture
def admin_client() -> Client:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client()
    client.force_login(boss)
    return client


def _text(response: Any) -> str:
    # Messages pass through HTML escaping (apostrophes, quotes): compare on the unescaped page.
    return html.unescape(response.content.decode())


def _connect(gitlab: GitLabFakes, **extra: Any) -> dict[str, Any]:
    return {
        "label": "duo",
        "instance_url": gitlab.instance_url,
        "gateway_url": gitlab.gateway_url,
        **extra,
    }


# ------------------------------------------------------------------------------ registry


def test_gitlab_flows_are_registered_with_clear_labels(admin_client: Client) -> None:
    flows = {f.key: f for f in flows_by_provider()["gitlab"]}
    assert list(flows) == ["gitlab.pat", "gitlab.oauth_device", "gitlab.oauth_pkce"]
    assert "personal access token" in flows["gitlab.pat"].title
    assert "OAuth, device code" in flows["gitlab.oauth_device"].title
    assert "OAuth, authorization code + PKCE" in flows["gitlab.oauth_pkce"].title
    page = _text(admin_client.get(BASE))
    assert "GitLab Duo — personal access token (PAT)" in page and 'id="flow-gitlabpat"' in page
    # the PAT form: defaults filled in, the token field write-only
    form = _text(admin_client.get(BASE + "gitlab.pat/"))
    assert 'value="https://gitlab.com"' in form and 'value="https://cloud.gitlab.com/ai"' in form
    assert re.search(r'<input type="password" name="token"', form)


# ----------------------------------------------------------------------------------- PAT


def test_pat_flow_adds_an_active_account(admin_client: Client, gitlab: GitLabFakes) -> None:
    url = BASE + "gitlab.pat/"
    admin_client.get(url)
    done = admin_client.post(url, _connect(gitlab, token=PAT))
    assert done.status_code == 302 and done["location"] == BOARD
    account = UpstreamAccount.objects.get(label="duo")
    assert account.provider == "gitlab" and account.state == AccountState.ACTIVE
    assert account.credential.kind == "pat" and account.credential.secret == {"token": PAT}
    assert account.provider_config["gateway_url"] == gitlab.gateway_url and "gitlab-duo" in account.model_names
    assert PAT not in str(AdminAction.objects.values_list("changes", flat=True))
    assert "flow" not in "".join(admin_client.session.keys())  # flow state dropped


@pytest.mark.parametrize(
    ("setup", "message", "on_token_field"),
    [
        ("bad_token", "GitLab rejected the token: unknown, revoked or expired.", True),
        ("scope", "Token lacks the api scope (it has: read_user). Create a token with the api scope.", True),
        ("no_duo", "Token valid but this user has no GitLab Duo access. Assign a GitLab Duo seat", False),
        ("grant", "The third-party agent grant is not enabled for this user/instance. An instance admin", False),
        ("direct", "Direct connections are disabled on this instance. An instance admin must turn off", False),
        ("unreachable", "GitLab instance unreachable (ConnectError on GET /api/v4/personal_access_tokens", False),
    ],
)
def test_pat_flow_names_each_failure(
    admin_client: Client, gitlab: GitLabFakes, setup: str, message: str, on_token_field: bool
) -> None:
    token, instance = PAT, gitlab.instance_url
    if setup == "bad_token":
        token = "glpat-not-a-real-token-000000000"
    elif setup == "scope":
        token = "glpat-read-user-only-00000000000"
        gitlab.world.add_pat(token, scopes=("read_user",))
    elif setup == "no_duo":
        gitlab.world.users[1].duo = False
    elif setup == "grant":
        gitlab.world.users[1].agent_grant = False
    elif setup == "direct":
        gitlab.world.direct_connections_disabled = True
    else:
        instance = "http://127.0.0.1:9"
    url = BASE + "gitlab.pat/"
    admin_client.get(url)
    page = admin_client.post(url, {**_connect(gitlab, token=token), "instance_url": instance})
    text = _text(page)
    assert page.status_code == 200 and message in text
    # on the field when the token is the problem, above the form otherwise
    assert ('class="errorlist' in text.split(message)[0][-200:]) is on_token_field
    assert not UpstreamAccount.objects.exists()
    assert 'name="token"' in text and PAT not in text  # the token is never echoed back


def test_pat_flow_keeps_an_account_without_duo_when_asked(admin_client: Client, gitlab: GitLabFakes) -> None:
    gitlab.world.users[1].duo = False
    url = BASE + "gitlab.pat/"
    admin_client.get(url)
    done = admin_client.post(url, _connect(gitlab, token=PAT, keep_without_duo="on"))
    assert done.status_code == 302
    account = UpstreamAccount.objects.get(label="duo")
    assert account.state == AccountState.NOT_ENTITLED
    assert "token valid but this user has no GitLab Duo access" in account.last_error


def test_pat_flow_refuses_a_label_of_another_provider(admin_client: Client, gitlab: GitLabFakes) -> None:
    from executors.openai_compat.services import account_add_openai_compat

    account_add_openai_compat(
        label="duo", base_url="https://api.example.com/v1", api_key="sk-x", model_names=["m"], actor=None
    )
    url = BASE + "gitlab.pat/"
    admin_client.get(url)
    text = _text(admin_client.post(url, _connect(gitlab, token=PAT)))
    assert "The label is used by a" in text and "account." in text
    assert gitlab.world.count("mints") == 0  # refused before GitLab was contacted


# ----------------------------------------------------------------------- device grant


def _device_start(client: Client, gitlab: GitLabFakes, **extra: Any) -> tuple[str, str]:
    url = BASE + "gitlab.oauth_device/"
    client.get(url)
    page = _text(client.post(url, _connect(gitlab, client_id=CLIENT_ID, **extra)))
    match = re.search(r'id="gitlab-user-code"[^>]*>([0-9A-F]+)<', page)
    assert match, page[:2000]
    assert gitlab.instance_url + "/oauth/device" in page and "I approved it — continue" in page
    return url, match.group(1)


def test_device_flow_pending_then_approved(admin_client: Client, gitlab: GitLabFakes) -> None:
    gitlab.world.device_pending_polls = -1  # pending until approved
    url, code = _device_start(admin_client, gitlab)
    # not approved yet: said in words, the page stays and keeps polling
    pending = _text(admin_client.post(url, {}))
    assert "Not approved yet: GitLab says the authorization is still pending." in pending
    assert f"enter {code}" in pending and "setTimeout" in pending
    gitlab.world.approve_device(code)
    done = admin_client.post(url, {})
    assert done.status_code == 302 and done["location"] == BOARD
    account = UpstreamAccount.objects.get(label="duo")
    assert account.credential.kind == "oauth" and account.provider_config["auth"] == "oauth"
    assert account.state == AccountState.ACTIVE


def test_device_flow_slow_down_is_explained(admin_client: Client, gitlab: GitLabFakes) -> None:
    gitlab.world.enforce_slow_down = True
    gitlab.world.device_pending_polls = 5
    url, _code = _device_start(admin_client, gitlab)
    admin_client.post(url, {})
    slow = _text(admin_client.post(url, {}))  # at once again: too fast
    assert "GitLab asked us to check less often (slow_down); the next check is in 10 s." in slow
    assert 'id="gitlab-poll-seconds">10<' in slow  # the page's own timer follows


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ("expired", "The device code expired before it was approved; start again."),
        ("denied", "The GitLab user refused the authorization request."),
        ("no_duo", "Token valid but this user has no GitLab Duo access. Assign a GitLab Duo seat"),
    ],
)
def test_device_flow_ends_with_the_reason(
    admin_client: Client, gitlab: GitLabFakes, outcome: str, message: str
) -> None:
    url, code = _device_start(admin_client, gitlab)
    if outcome == "expired":
        for device in gitlab.world.devices.values():
            device.expires_at = 0
    elif outcome == "denied":
        gitlab.world.approve_device(code, deny=True)
    else:
        gitlab.world.users[1].duo = False
        gitlab.world.approve_device(code)
    page = _text(admin_client.post(url, {}))
    assert message in page
    # the code is spent: no more polling, a way to start over instead
    assert "setTimeout" not in page and 'id="flow-restart"' in page
    again = _text(admin_client.post(url, {}))
    assert "This login attempt has ended. Start again to get a new code." in again
    assert not UpstreamAccount.objects.exists()


def test_device_flow_unknown_application(admin_client: Client, gitlab: GitLabFakes) -> None:
    url = BASE + "gitlab.oauth_device/"
    admin_client.get(url)
    page = _text(admin_client.post(url, _connect(gitlab, client_id="no-such-app")))
    assert "GitLab refused to start the device login (HTTP 401). Check the application ID (and secret)." in page
    assert "Client authentication failed" in page  # GitLab's own words


# ------------------------------------------------------------------------------- PKCE


def _pkce_start(client: Client, gitlab: GitLabFakes, **extra: Any) -> tuple[str, str]:
    url = BASE + "gitlab.oauth_pkce/"
    client.get(url)
    page = _text(client.post(url, _connect(gitlab, client_id=CLIENT_ID, redirect_uri=REDIRECT, **extra)))
    match = re.search(r'id="gitlab-authorize-url" href="([^"]+)"', page)
    assert match, page[:2000]
    assert 'name="callback"' in page
    return url, match.group(1)


def _approve(authorize_url: str) -> str:
    """What the person's browser does: GitLab answers with a redirect to the callback."""
    response = httpx.get(authorize_url, follow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def test_pkce_flow_adds_an_account(admin_client: Client, gitlab: GitLabFakes) -> None:
    url, authorize = _pkce_start(admin_client, gitlab)
    assert "code_challenge_method=S256" in authorize and f"client_id={CLIENT_ID}" in authorize
    done = admin_client.post(url, {"callback": _approve(authorize)})
    assert done.status_code == 302 and done["location"] == BOARD
    account = UpstreamAccount.objects.get(label="duo")
    assert account.credential.kind == "oauth" and account.state == AccountState.ACTIVE
    assert account.provider_config["oauth"]["redirect_uri"] == REDIRECT


def test_pkce_flow_refusal_and_state_mismatch_can_be_retried(admin_client: Client, gitlab: GitLabFakes) -> None:
    url, authorize = _pkce_start(admin_client, gitlab)
    state = re.search(r"state=([^&]+)", authorize).group(1)  # type: ignore[union-attr]
    denied = _text(admin_client.post(url, {"callback": f"{REDIRECT}?error=access_denied&state={state}"}))
    assert "GitLab did not authorize the application: access_denied." in denied
    mismatch = _text(admin_client.post(url, {"callback": f"{REDIRECT}?code=abc&state=someone-else"}))
    assert "The callback's state does not match this login (CSRF check)." in mismatch
    # neither used the link up: the real callback still works
    done = admin_client.post(url, {"callback": _approve(authorize)})
    assert done.status_code == 302


def test_pkce_flow_bad_code_uses_the_link_up(admin_client: Client, gitlab: GitLabFakes) -> None:
    url, authorize = _pkce_start(admin_client, gitlab)
    page = _text(admin_client.post(url, {"callback": "not-a-real-code"}))
    assert "GitLab refused the authorization code (HTTP 400). This sign-in link is used up: start again." in page
    assert "The provided authorization grant is invalid" in page  # GitLab's own words
    assert 'id="flow-restart"' in page
    again = _text(admin_client.post(url, {"callback": _approve(authorize)}))
    assert "This sign-in link was used up by the last attempt. Start again for a new link." in again
    assert not UpstreamAccount.objects.exists()


# ------------------------------------------------------------------------ board actions


def _board_action(client: Client, action: str, account: UpstreamAccount) -> str:
    response = client.post(BOARD, {"action": action, "_selected_action": [account.pk]}, follow=True)
    # Only the messages: the rest of the board would match labels too.
    found = re.search(r'<ul class="messagelist">(.*?)</ul>', _text(response), re.S)
    return found.group(1) if found else ""


def test_board_test_and_refresh_work_for_gitlab_accounts(admin_client: Client, gitlab: GitLabFakes) -> None:
    # a PAT account and an OAuth account, added through the flows
    url = BASE + "gitlab.pat/"
    admin_client.get(url)
    admin_client.post(url, _connect(gitlab, label="duo-pat", token=PAT))
    # (the same GitLab user as the PAT: the duplicate is confirmed)
    url, authorize = _pkce_start(admin_client, gitlab, allow_duplicate="on")
    admin_client.post(url, {"callback": _approve(authorize)})
    pat, oauth = UpstreamAccount.objects.get(label="duo-pat"), UpstreamAccount.objects.get(label="duo")

    tested = _board_action(admin_client, "test_accounts", oauth)
    assert re.search(r"Duo: \S+ answered", tested), tested

    # The encrypted field is typed as text; it holds the decrypted dict at runtime.
    old_refresh = cast(dict[str, str], oauth.credential.secret)["refresh_token"]
    refreshed = _board_action(admin_client, "refresh_accounts", oauth)
    assert "Duo: OAuth token pair refreshed; gateway token re-minted" in refreshed
    oauth.credential.refresh_from_db()
    assert cast(dict[str, str], oauth.credential.secret)["refresh_token"] != old_refresh
    assert gitlab.world.count("refreshes") == 1

    mints = gitlab.world.count("mints")
    refreshed = _board_action(admin_client, "refresh_accounts", pat)
    assert "Duo-pat: gateway token re-minted (a personal access token itself cannot be refreshed)" in refreshed
    assert gitlab.world.count("mints") == mints + 1

    # a failure names the cause and marks the account
    gitlab.world.users[1].duo = False
    failed = _board_action(admin_client, "refresh_accounts", pat)
    assert "Duo-pat: refresh failed: token valid but this user has no GitLab Duo access" in failed
    pat.refresh_from_db()
    assert pat.state == AccountState.NOT_ENTITLED


def test_the_same_gitlab_user_twice_is_refused_unless_confirmed(admin_client: Client, gitlab: GitLabFakes) -> None:
    from audit.models import AdminAction

    url = BASE + "gitlab.pat/"
    admin_client.get(url)
    admin_client.post(url, _connect(gitlab, label="duo-a", token=PAT))
    # the admin who added it is in the action log (not "system")
    created = AdminAction.objects.get(action="account.create", target_label="duo-a")
    assert created.actor_label == "boss"
    admin_client.get(url)
    page = _text(admin_client.post(url, _connect(gitlab, label="duo-b", token=PAT)))
    assert "is already added as account 'duo-a'" in page and "Add even if already added" in page
    assert not UpstreamAccount.objects.filter(label="duo-b").exists()
    admin_client.get(url)
    admin_client.post(url, _connect(gitlab, label="duo-b", token=PAT, allow_duplicate="on"))
    assert UpstreamAccount.objects.filter(label="duo-b").exists()
    # signing in again under the same label is a credential replacement, not a duplicate
    admin_client.get(url)
    admin_client.post(url, _connect(gitlab, label="duo-a", token=PAT))
    replaced = AdminAction.objects.get(action="account.credential_replace", target_label="duo-a")
    assert replaced.actor_label == "boss" and PAT not in str(replaced.changes)
