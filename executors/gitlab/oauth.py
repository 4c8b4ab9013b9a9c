"""GitLab OAuth tokens: parsing token replies and the rotating refresh
(docs/protocols/gitlab-duo.md#sign-in-and-tokens).

Every refresh invalidates both the old access token and the old refresh token, so:
- only one process refreshes an account at a time (a state-store lock, shared by every
  web and Celery process);
- the new pair is written (transaction + row lock) before it is used;
- `invalid_grant` first re-reads the stored pair: a sibling process may have rotated it a
  moment ago. Only an unchanged pair marks the account `auth_failed`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from accounts.models import AccountState
from executors.gitlab import CredentialKind
from executors.gitlab import client as gl
from executors.gitlab.config import GitLabAccount, gitlab_account_load
from executors.gitlab.exceptions import GitLabError
from executors.gitlab.records import gitlab_account_state_set, gitlab_credential_rotate
from infra.db import db_call
from observability.metrics import counts_refresh
from statestore import LockNotAcquired, StateStore

# Refresh when at most this much access-token life remains (docs/protocols/gitlab-duo.md#sign-in-and-tokens,
# docs/protocols/gitlab-duo.md#lifetimes-and-caching).
REFRESH_MARGIN = 300.0
_LOCK_TTL = 30.0


def token_secret(body: Any, *, client_secret: str | None = None) -> tuple[dict[str, Any], float | None]:
    """Credential secret from a /oauth/token reply; expiry = created_at + expires_in
    (docs/protocols/gitlab-duo.md#sign-in-and-tokens)."""
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise GitLabError("GitLab's token reply has no access_token", kind=GitLabError.LOGIN)
    expires_in = body.get("expires_in")
    created = body.get("created_at")
    expires_at: float | None = None
    if isinstance(expires_in, int | float):
        base = float(created) if isinstance(created, int | float) else time.time()
        expires_at = base + float(expires_in)
    secret: dict[str, Any] = {
        "access_token": body["access_token"],
        "refresh_token": body.get("refresh_token") or "",
        "expires_at": expires_at,
        "scope": body.get("scope") or "",
    }
    if client_secret:
        secret["client_secret"] = client_secret
    return secret, expires_at


def oauth_client_form(config: dict[str, Any], secret: dict[str, Any]) -> dict[str, str]:
    oauth = config.get("oauth") or {}
    form = {"client_id": str(oauth.get("client_id", ""))}
    if oauth.get("redirect_uri"):
        form["redirect_uri"] = str(oauth["redirect_uri"])
    if secret.get("client_secret"):
        form["client_secret"] = str(secret["client_secret"])
    return form


def _usable(secret: dict[str, Any], rejected: str | None, now: float) -> bool:
    access = secret.get("access_token")
    expires_at = secret.get("expires_at")
    if not access or access == rejected:
        return False
    return expires_at is None or float(expires_at) - now > REFRESH_MARGIN


async def gitlab_access_token(
    *,
    account_id: int,
    store: StateStore,
    client: httpx.AsyncClient,
    rejected: str | None = None,
) -> tuple[str, str]:
    """(GitLab token, credential kind) for instance calls, refreshing an OAuth pair if needed.

    `rejected`: an access token GitLab just answered 401 to; it is refreshed even if its
    recorded expiry looks fine (revoked, or rotated by a sibling whose write we have not seen).
    """
    account = await db_call(gitlab_account_load, account_id)
    if account.kind == CredentialKind.PAT:
        return str(account.secret.get("token", "")), account.kind
    if _usable(account.secret, rejected, time.time()):
        return str(account.secret["access_token"]), account.kind
    return await _refresh_single_flight(account_id, store, client, rejected), account.kind


async def _refresh_single_flight(
    account_id: int, store: StateStore, client: httpx.AsyncClient, rejected: str | None
) -> str:
    key = f"gitlab:oauth-refresh:{account_id}"
    deadline = time.monotonic() + _LOCK_TTL
    while True:
        try:
            async with store.lock(key, ttl=_LOCK_TTL):
                account = await db_call(gitlab_account_load, account_id)
                if _usable(account.secret, rejected, time.time()):
                    return str(account.secret["access_token"])  # a sibling refreshed meanwhile
                return await _refresh(account, client)
        except LockNotAcquired:
            # Someone else is rotating this pair; wait for them and use what they stored.
            while time.monotonic() < deadline:
                if await store.get(f"lock:{key}") is None:
                    break
                await asyncio.sleep(0.05)
            account = await db_call(gitlab_account_load, account_id)
            if _usable(account.secret, rejected, time.time()):
                return str(account.secret["access_token"])
            if time.monotonic() >= deadline:
                raise GitLabError(
                    "timed out waiting for another process to refresh the GitLab OAuth token",
                    kind=GitLabError.UNREACHABLE,
                ) from None


@counts_refresh("gitlab_oauth")
async def _refresh(account: GitLabAccount, client: httpx.AsyncClient) -> str:
    used = str(account.secret.get("refresh_token") or "")
    if not used:
        raise GitLabError(
            "this OAuth account has no refresh token; log in again (manage.py gitlab_login)",
            kind=GitLabError.AUTH_FAILED,
            account_state=AccountState.AUTH_FAILED,
        )
    form = {"grant_type": "refresh_token", "refresh_token": used, **oauth_client_form(account.config, account.secret)}
    reply = await gl.request(client, "POST", f"{account.instance_url}/oauth/token", form=form)
    if reply.ok:
        secret, expires_at = token_secret(reply.body, client_secret=account.secret.get("client_secret"))
        if await db_call(
            gitlab_credential_rotate,
            account_id=account.id,
            used_refresh_token=used,
            secret=secret,
            expires_at=expires_at,
        ):
            return str(secret["access_token"])
        # Our lock expired and a sibling stored a newer pair first; theirs is the live one.
        fresh = await db_call(gitlab_account_load, account.id)
        return str(fresh.secret.get("access_token", ""))
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    if reply.status in (400, 401) and error in ("invalid_grant", "invalid_token"):
        fresh = await db_call(gitlab_account_load, account.id)
        if fresh.secret.get("refresh_token") != used:
            # Rotated by another process between our read and our POST: not a dead account.
            return str(fresh.secret.get("access_token", ""))
        message = "GitLab refused the refresh token (revoked, or already used); log in again with gitlab_login"
        raise await _auth_failed(account.id, message, reply)
    if reply.status == 429 or reply.status >= 500:
        raise reply.error(f"GitLab token refresh failed with HTTP {reply.status}; will retry", GitLabError.MINT_FAILED)
    # invalid_client & co: the OAuth application itself is misconfigured or deleted.
    message = f"GitLab rejected the OAuth application on refresh (HTTP {reply.status}); check client id/secret"
    raise await _auth_failed(account.id, message, reply)


async def _auth_failed(account_id: int, message: str, reply: gl.Reply) -> GitLabError:
    """The refresh can never work again: the account needs a new login (state recorded)."""
    await db_call(
        gitlab_account_state_set,
        account_id=account_id,
        state=AccountState.AUTH_FAILED,
        message=f"{message} (GitLab said: {reply.text})",
    )
    return reply.error(message, GitLabError.AUTH_FAILED, account_state=AccountState.AUTH_FAILED)
