"""GitLab Duo login flows against the fake instance: device grant, PKCE, PAT, Duo probes."""

from __future__ import annotations

import httpx
import pytest

from accounts.models import AccountState, UpstreamAccount
from executors.gitlab.exceptions import GitLabError, LoginPending
from executors.gitlab.models import GatewayToken
from executors.gitlab.services import (
    gitlab_oauth_device_poll,
    gitlab_oauth_device_start,
    gitlab_oauth_pkce_finish,
    gitlab_oauth_pkce_start,
    gitlab_pat_add,
)
from tests.executors.gitlab.conftest import CLIENT_ID, PAT, REDIRECT
from tests.fakes.gitlab import GitLabFakes, User

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _device_login(gitlab: GitLabFakes, label: str = "duo-oauth") -> UpstreamAccount:
    start = gitlab_oauth_device_start(
        label=label, client_id=CLIENT_ID, instance_url=gitlab.instance_url, gateway_url=gitlab.gateway_url
    )
    for _ in range(10):
        try:
            return gitlab_oauth_device_poll(flow_id=start.flow_id)
        except LoginPending:
            continue
    raise AssertionError("device login never completed")


def test_device_flow_creates_an_account_after_pending_polls(gitlab: GitLabFakes) -> None:
    # given a device grant that stays pending for two polls
    gitlab.world.device_pending_polls = 2
    start = gitlab_oauth_device_start(
        label="duo-oauth", client_id=CLIENT_ID, instance_url=gitlab.instance_url, gateway_url=gitlab.gateway_url
    )
    assert start.user_code and start.verification_uri_complete.endswith(start.user_code)
    # when polling
    pending = 0
    while True:
        try:
            account = gitlab_oauth_device_poll(flow_id=start.flow_id)
            break
        except LoginPending as exc:
            pending += 1
            assert exc.interval == 5.0 and not exc.slow_down
    # then the account exists, serves the allow-list + aliases, and the probe's grant is kept
    assert pending == 2
    assert account.provider == "gitlab" and account.state == AccountState.ACTIVE
    assert "gitlab-duo" in account.model_names and "claude-sonnet-4-6" in account.model_names
    assert "gpt-5.1" in account.model_names
    assert account.provider_config["auth"] == "oauth"
    assert account.provider_config["user"]["username"] == "duo-user"
    assert account.provider_config["gateway_url"] == gitlab.gateway_url
    cred = account.credential
    assert cred.kind == "oauth" and cred.secret["refresh_token"].startswith("glort-") and cred.expires_at
    assert GatewayToken.objects.filter(account=account).count() == 1
    assert gitlab.world.count("mints") == 1
    # and the flow is single-use
    with pytest.raises(GitLabError, match="unknown or expired"):
        gitlab_oauth_device_poll(flow_id=start.flow_id)


def test_device_flow_slow_down_increases_interval(gitlab: GitLabFakes) -> None:
    gitlab.world.enforce_slow_down = True
    gitlab.world.device_pending_polls = 5
    start = gitlab_oauth_device_start(label="x", client_id=CLIENT_ID, instance_url=gitlab.instance_url)
    with pytest.raises(LoginPending) as first:
        gitlab_oauth_device_poll(flow_id=start.flow_id)
    assert not first.value.slow_down
    with pytest.raises(LoginPending) as second:  # polled again at once: too fast
        gitlab_oauth_device_poll(flow_id=start.flow_id)
    assert second.value.slow_down and second.value.interval == 10.0


@pytest.mark.parametrize(
    ("setup", "message"),
    [("expire", "expired before it was approved"), ("deny", "refused the authorization request")],
)
def test_device_flow_terminal_errors(gitlab: GitLabFakes, setup: str, message: str) -> None:
    if setup == "expire":
        gitlab.world.device_expires_in = 0.0
    start = gitlab_oauth_device_start(label="x", client_id=CLIENT_ID, instance_url=gitlab.instance_url)
    if setup == "deny":
        gitlab.world.approve_device(start.user_code, deny=True)
    with pytest.raises(GitLabError, match=message):
        gitlab_oauth_device_poll(flow_id=start.flow_id)
    assert not UpstreamAccount.objects.exists()


def test_pkce_flow_with_pasted_callback(gitlab: GitLabFakes) -> None:
    # given the operator opened the authorize URL and GitLab redirected the browser
    start = gitlab_oauth_pkce_start(
        label="duo-pkce",
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT,
        instance_url=gitlab.instance_url,
        gateway_url=gitlab.gateway_url,
    )
    assert "code_challenge_method=S256" in start.authorize_url and "scope=api+read_user" in start.authorize_url
    callback = httpx.get(start.authorize_url, follow_redirects=False).headers["location"]
    assert callback.startswith(REDIRECT) and f"state={start.flow_id}" in callback
    # when the redirected URL is pasted back
    account = gitlab_oauth_pkce_finish(callback=callback)
    # then the code was exchanged with the verifier (the fake checks S256) and the account is ready
    assert account.state == AccountState.ACTIVE and account.credential.kind == "oauth"
    assert gitlab.world.count("code_exchanges") == 1
    token_req = next(r for r in gitlab.instance.requests if r["path"] == "/oauth/token")
    assert token_req["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    # and the verifier cannot be used twice
    with pytest.raises(GitLabError, match="unknown or expired"):
        gitlab_oauth_pkce_finish(callback=callback)


def test_pkce_rejects_a_foreign_state(gitlab: GitLabFakes) -> None:
    start = gitlab_oauth_pkce_start(
        label="x", client_id=CLIENT_ID, redirect_uri=REDIRECT, instance_url=gitlab.instance_url
    )
    with pytest.raises(GitLabError, match="CSRF"):
        gitlab_oauth_pkce_finish(callback=f"{REDIRECT}?code=abc&state=other", flow_id=start.flow_id)


def test_pat_is_validated_and_probed(gitlab: GitLabFakes) -> None:
    account = gitlab_pat_add(
        label="duo-pat", token=PAT, instance_url=gitlab.instance_url, gateway_url=gitlab.gateway_url
    )
    assert account.credential.kind == "pat" and account.credential.secret == {"token": PAT}
    assert account.provider_config["pat"]["scopes"] == ["api"]
    assert account.provider_config["pat"]["expires_at"] == "2099-01-01"
    assert account.credential.expires_at is not None
    assert account.state == AccountState.ACTIVE and "gitlab-duo" in account.model_names
    paths = [r["path"] for r in gitlab.instance.requests]
    assert paths == [
        "/api/v4/personal_access_tokens/self",
        "/api/v4/user",
        "/api/v4/ai/third_party_agents/direct_access",
    ]


def _no_duo(g: GitLabFakes) -> None:
    g.world.users[1].duo = False


def _direct_off(g: GitLabFakes) -> None:
    g.world.direct_connections_disabled = True


def _grant_off(g: GitLabFakes) -> None:
    g.world.users[1].agent_grant = False


def _read_only(g: GitLabFakes) -> None:
    g.world.add_pat(PAT, scopes=("read_user",))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (_no_duo, "token valid but this user has no GitLab Duo access"),
        (_direct_off, "direct connections are disabled on this instance"),
        (_grant_off, "the third-party agent grant is not enabled for this user/instance"),
        (_read_only, "token lacks the api scope"),
    ],
    ids=["no-duo", "direct-disabled", "grant-disabled", "scope"],
)
def test_pat_specific_messages(gitlab: GitLabFakes, setup: object, message: str) -> None:
    setup(gitlab)  # type: ignore[operator]
    with pytest.raises(GitLabError) as err:
        gitlab_pat_add(label="duo-pat", token=PAT, instance_url=gitlab.instance_url)
    assert err.value.message.startswith(message)
    assert not UpstreamAccount.objects.exists()


def test_pat_without_duo_can_be_kept_as_not_entitled(gitlab: GitLabFakes) -> None:
    gitlab.world.users[1].duo = False
    account = gitlab_pat_add(label="duo-pat", token=PAT, instance_url=gitlab.instance_url, keep_without_duo=True)
    assert account.state == AccountState.NOT_ENTITLED
    assert account.last_error.startswith("token valid but this user has no GitLab Duo access")


def test_pat_rejected_and_expired(gitlab: GitLabFakes) -> None:
    with pytest.raises(GitLabError, match="rejected the token"):
        gitlab_pat_add(label="x", token="glpat-unknown", instance_url=gitlab.instance_url)
    gitlab.world.add_pat("glpat-old", expires_at="2020-01-01")
    with pytest.raises(GitLabError, match=r"revoked or no longer active|expired"):
        gitlab_pat_add(label="x", token="glpat-old", instance_url=gitlab.instance_url)


def test_relogin_keeps_admin_overrides(gitlab: GitLabFakes) -> None:
    account = gitlab_pat_add(label="duo", token=PAT, instance_url=gitlab.instance_url)
    account.provider_config = {**account.provider_config, "aliases": {"team-default": "claude-opus-4-7"}}
    account.save()
    gitlab.world.add_user(User(2, "second"))
    gitlab.world.add_pat("glpat-second", user_id=2)
    again = gitlab_pat_add(label="duo", token="glpat-second", instance_url=gitlab.instance_url)
    assert again.id == account.id and again.provider_config["user"]["username"] == "second"
    assert "team-default" in again.model_names
