"""Rotating OAuth refresh, gateway-token minting (single-flight, rate limit) and refresh-ahead."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from accounts.models import AccountState, Credential, UpstreamAccount
from executors.gitlab.config import gitlab_account_load
from executors.gitlab.exceptions import GitLabError, LoginPending
from executors.gitlab.grants import gitlab_gateway_grant, gitlab_grant_cache_clear
from executors.gitlab.models import GatewayToken
from executors.gitlab.oauth import gitlab_access_token
from executors.gitlab.services import gitlab_oauth_device_poll, gitlab_oauth_device_start, gitlab_pat_add
from executors.gitlab.tasks import gitlab_tokens_refresh_task
from infra.db import db_call
from statestore import get_store
from tests.executors.gitlab.conftest import CLIENT_ID, PAT
from tests.fakes.base import Fault
from tests.fakes.gitlab import GitLabFakes

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _oauth_account(gitlab: GitLabFakes) -> UpstreamAccount:
    gitlab.world.device_pending_polls = 0
    start = gitlab_oauth_device_start(
        label="duo-oauth", client_id=CLIENT_ID, instance_url=gitlab.instance_url, gateway_url=gitlab.gateway_url
    )
    try:
        return gitlab_oauth_device_poll(flow_id=start.flow_id)
    except LoginPending:  # pragma: no cover - pending polls are 0
        raise AssertionError("unexpected pending") from None


def _secret(account_id: int) -> dict[str, object]:
    return dict(Credential.objects.get(account_id=account_id).secret)


async def test_concurrent_refreshes_rotate_once(gitlab: GitLabFakes) -> None:
    # given an OAuth account whose access token GitLab no longer accepts
    account = await db_call(_oauth_account, gitlab)
    before = await db_call(_secret, account.id)
    # when 10 coroutines need a fresh token at once
    async with httpx.AsyncClient() as client:
        tokens = await asyncio.gather(
            *(
                gitlab_access_token(
                    account_id=account.id, store=get_store(), client=client, rejected=str(before["access_token"])
                )
                for _ in range(10)
            )
        )
    # then GitLab saw exactly one refresh, nobody reused the old refresh token
    assert gitlab.world.count("refreshes") == 1 and gitlab.world.count("refresh_reuse") == 0
    after = await db_call(_secret, account.id)
    assert {t for t, _ in tokens} == {after["access_token"]} and after["refresh_token"] != before["refresh_token"]
    # and the new pair was stored before use: the fake accepts it, and the old one is dead
    assert gitlab.world.token_user(str(after["access_token"])) is not None
    assert gitlab.world.token_user(str(before["access_token"])) is None


async def test_invalid_grant_rereads_a_pair_rotated_by_a_sibling(gitlab: GitLabFakes) -> None:
    # given our refresh POST is held at GitLab, and meanwhile a sibling process rotates the pair
    account = await db_call(_oauth_account, gitlab)
    before = await db_call(_secret, account.id)
    token_posts = _token_posts(gitlab)
    gitlab.instance.faults.push(Fault.slow(0.5).where(path="/oauth/token"))

    async def sibling() -> None:
        # Only once ours has reached GitLab (a fixed head start was not enough where the lock
        # and the first database read take longer, e.g. on Postgres under load).
        deadline = time.monotonic() + 5.0
        while _token_posts(gitlab) == token_posts:
            assert time.monotonic() < deadline, "our refresh never reached GitLab"
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as c:
            r = await c.post(
                gitlab.instance_url + "/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": before["refresh_token"], "client_id": CLIENT_ID},
            )
        body = r.json()
        await db_call(_store_pair, account.id, body)

    async with httpx.AsyncClient() as client:
        token, _ = (
            await asyncio.gather(
                gitlab_access_token(
                    account_id=account.id, store=get_store(), client=client, rejected=str(before["access_token"])
                ),
                sibling(),
            )
        )[0]
    # then our late refresh hit invalid_grant (reuse), re-read the stored pair and used it
    assert gitlab.world.count("refresh_reuse") == 1
    after = await db_call(_secret, account.id)
    assert token == after["access_token"] != before["access_token"]
    assert (await db_call(UpstreamAccount.objects.get, pk=account.id)).state == AccountState.ACTIVE


def _token_posts(gitlab: GitLabFakes) -> int:
    return sum(1 for r in gitlab.instance.control.requests if r["method"] == "POST" and r["path"] == "/oauth/token")


def _store_pair(account_id: int, body: dict[str, object]) -> None:
    cred = Credential.objects.get(account_id=account_id)
    cred.secret = {
        **cred.secret,
        "access_token": body["access_token"],
        "refresh_token": body["refresh_token"],
        "expires_at": time.time() + 7200,
    }
    cred.save()


async def test_reused_refresh_token_marks_account_auth_failed(gitlab: GitLabFakes) -> None:
    # given the stored refresh token was already spent elsewhere (and nobody stored the result)
    account = await db_call(_oauth_account, gitlab)
    before = await db_call(_secret, account.id)
    async with httpx.AsyncClient() as c:
        r = await c.post(
            gitlab.instance_url + "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": before["refresh_token"], "client_id": CLIENT_ID},
        )
        assert r.status_code == 200
        # when we refresh with the spent token
        with pytest.raises(GitLabError) as err:
            await gitlab_access_token(
                account_id=account.id, store=get_store(), client=c, rejected=str(before["access_token"])
            )
    # then GitLab saw the reuse, and the account needs a new login
    assert gitlab.world.count("refresh_reuse") == 1
    assert err.value.kind == GitLabError.AUTH_FAILED and "log in again" in err.value.message
    row = await db_call(UpstreamAccount.objects.get, pk=account.id)
    assert row.state == AccountState.AUTH_FAILED and "invalid_grant" in row.last_error


async def test_expiring_access_token_is_refreshed_before_minting(gitlab: GitLabFakes) -> None:
    account = await db_call(_oauth_account, gitlab)
    cred = await db_call(Credential.objects.get, account_id=account.id)
    cred.secret = {**cred.secret, "expires_at": time.time() + 60}  # inside the 5-minute margin
    await db_call(cred.save)
    await db_call(GatewayToken.objects.all().delete)
    await get_store().delete(f"gitlab:grant:{account.id}")
    gitlab_grant_cache_clear()
    async with httpx.AsyncClient() as client:
        grant = await gitlab_gateway_grant(account_id=account.id, store=get_store(), client=client)
    assert grant.token and gitlab.world.count("refreshes") == 1 and gitlab.world.count("mints") == 2


def _pat_account(gitlab: GitLabFakes) -> UpstreamAccount:
    return gitlab_pat_add(label="duo-pat", token=PAT, instance_url=gitlab.instance_url, gateway_url=gitlab.gateway_url)


async def _expire_cached_grant(account_id: int, seconds: float) -> None:
    """Make the cached grant look like it expires in `seconds` (DB row; store and memory emptied)."""
    await db_call(
        GatewayToken.objects.filter(account_id=account_id).update,
        expires_at=datetime.now(tz=UTC) + timedelta(seconds=seconds),
    )
    await get_store().delete(f"gitlab:grant:{account_id}")
    gitlab_grant_cache_clear()


async def test_mint_rate_limit_backs_off_and_serves_the_cached_token(gitlab: GitLabFakes) -> None:
    account = await db_call(_pat_account, gitlab)
    await _expire_cached_grant(account.id, 120)  # due for re-mint, still valid for 2 minutes
    gitlab.instance.faults.push(Fault.http(429).where(path="/api/v4/ai/third_party_agents/direct_access"))
    mints_before = gitlab.world.count("third_party_requests")
    async with httpx.AsyncClient() as client:
        first = await gitlab_gateway_grant(account_id=account.id, store=get_store(), client=client)
        second = await gitlab_gateway_grant(account_id=account.id, store=get_store(), client=client)
        # the cached (near-expiry) token is served; the second call did not ask GitLab again
        assert first.token == second.token
        assert gitlab.world.count("third_party_requests") == mints_before  # the fault answered, not the handler
        assert len([r for r in gitlab.instance.requests if r["path"].endswith("direct_access")]) == 2  # probe + 1
        # and with no usable token left, the caller gets a rate-limit error instead of a mint
        await _expire_cached_grant(account.id, 5)
        with pytest.raises(GitLabError) as err:
            await gitlab_gateway_grant(account_id=account.id, store=get_store(), client=client)
    assert err.value.kind == GitLabError.RATE_LIMITED and err.value.retry_after
    assert len([r for r in gitlab.instance.requests if r["path"].endswith("direct_access")]) == 2


async def test_mint_failure_is_shared_not_retried_by_every_waiter(gitlab: GitLabFakes) -> None:
    account = await db_call(_pat_account, gitlab)
    await _expire_cached_grant(account.id, 0)
    gitlab.world.mint_status, gitlab.world.mint_message = 503, "Token creation failed"
    async with httpx.AsyncClient() as client:
        results = await asyncio.gather(
            *(gitlab_gateway_grant(account_id=account.id, store=get_store(), client=client) for _ in range(20)),
            return_exceptions=True,
        )
    assert all(isinstance(r, GitLabError) and "Token creation failed" in r.message for r in results)
    # one probe at login + one failed mint: the 19 others read the recorded failure
    assert gitlab.world.count("third_party_requests") == 2


def test_refresh_ahead_task_mints_only_tokens_about_to_expire(gitlab: GitLabFakes) -> None:
    # given an account whose token expires in 8 minutes (inside the 10-minute window)
    gitlab.world.ujwt_ttl = 480
    account = _pat_account(gitlab)
    old = GatewayToken.objects.get(account=account)
    gitlab.world.ujwt_ttl = 3600
    # when beat runs the task
    result = gitlab_tokens_refresh_task.apply().get()
    # then exactly one new token was minted and stored
    assert result == {"accounts": 1, "ok": 1, "failed": 0}
    assert gitlab.world.count("mints") == 2
    new = GatewayToken.objects.get(account=account)
    assert new.expires_at > old.expires_at + timedelta(minutes=40)
    assert new.secret["token"] != old.secret["token"]
    assert "authorization" not in {k.lower() for k in new.secret["headers"]}
    # and running it again costs GitLab nothing
    gitlab_grant_cache_clear()
    assert gitlab_tokens_refresh_task.apply().get()["ok"] == 1
    assert gitlab.world.count("mints") == 2


def test_refresh_ahead_records_lost_entitlement(gitlab: GitLabFakes) -> None:
    gitlab.world.ujwt_ttl = 60
    account = _pat_account(gitlab)
    gitlab.world.users[1].agent_grant = False
    result = gitlab_tokens_refresh_task.apply().get()
    assert result["failed"] == 1
    account.refresh_from_db()
    assert account.state == AccountState.NOT_ENTITLED
    assert "third-party agent grant is not enabled" in account.last_error
    assert gitlab_account_load(account.id).kind == "pat"


def test_beat_schedule_has_the_refresh_task() -> None:
    from proxy_project.celery import app

    app.finalize()  # the provider's periodic tasks join the beat schedule then
    entry = app.conf.beat_schedule["gitlab-tokens-refresh"]
    assert entry["task"] == gitlab_tokens_refresh_task.name
    assert entry["schedule"] <= 300  # well inside the 10-minute refresh-ahead window
