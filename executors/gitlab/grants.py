"""The AI-gateway token ("UJWT") of a GitLab account: minted with the third-party-agents grant,
cached, refreshed ahead of expiry, and minted at most once per expiry across every process.

Where a grant lives, fastest first:
1. this process' memory (no I/O on the hot path);
2. the state store, encrypted (shared by every web/Celery process; Redis in production);
3. the GatewayToken row, encrypted (survives restarts of the in-process store);
4. a new mint, single-flight per account through a state-store lock. Waiters poll the store
   for the minter's result; a failed mint leaves its error in the store for a few seconds so
   waiters (and the next requests) report it instead of minting again (never hammer GitLab).

A mint 429 sets a backoff key (Retry-After, else 60 s, docs/protocols/gitlab-duo.md#errors) during which nobody mints;
a still
valid (if near-expiry) token is served meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import orjson

from accounts.crypto import decrypt_json, encrypt_json
from accounts.models import AccountState
from executors.errors import retry_after_seconds
from executors.gitlab import CredentialKind
from executors.gitlab import client as gl
from executors.gitlab.config import gitlab_account_load
from executors.gitlab.exceptions import GitLabError
from executors.gitlab.oauth import gitlab_access_token
from executors.gitlab.records import (
    gitlab_account_state_set,
    gitlab_gateway_token_drop,
    gitlab_gateway_token_read,
    gitlab_gateway_token_save,
)
from infra.db import db_call
from observability.metrics import counts_refresh
from statestore import LockNotAcquired, StateStore

# Serve a cached token until 5 min before it expires (docs/protocols/gitlab-duo.md#lifetimes-and-caching); the Celery
# task re-mints 10 min ahead.
SERVE_MARGIN = 300.0
AHEAD_WINDOW = 600.0
# Near-expiry tokens are still served while minting is rate limited, down to this margin.
_LAST_RESORT_MARGIN = 15.0
_MINT_LOCK_TTL = 30.0
_MINT_WAIT = 25.0
_MINT_ERROR_TTL = 10.0
_MINT_BACKOFF_DEFAULT = 60.0
# Header entries that must never be forwarded from the grant
# (docs/protocols/gitlab-duo.md#duo-entitlement-and-the-gateway-grant: clients drop them).
_DROPPED_HEADERS = frozenset({"authorization", "x-api-key"})


@dataclass(frozen=True, slots=True)
class GatewayGrant:
    token: str
    headers: dict[str, str] = field(repr=False)
    expires_at: float
    gateway_url: str

    def fresh(self, now: float, margin: float = SERVE_MARGIN) -> bool:
        return now < self.expires_at - margin

    def __repr__(self) -> str:
        return f"GatewayGrant(expires_at={self.expires_at:.0f}, gateway_url={self.gateway_url!r})"


_local: dict[int, GatewayGrant] = {}


def gitlab_grant_cache_clear() -> None:
    _local.clear()


def grant_local_forget(account_id: int) -> None:
    _local.pop(account_id, None)


def _key(account_id: int) -> str:
    return f"gitlab:grant:{account_id}"


def _mint_error_key(account_id: int) -> str:
    return f"gitlab:mint-error:{account_id}"


def _backoff_key(account_id: int) -> str:
    return f"gitlab:mint-backoff:{account_id}"


async def _store_read(store: StateStore, account_id: int) -> GatewayGrant | None:
    raw = await store.get(_key(account_id))
    if raw is None:
        return None
    try:
        data = decrypt_json(raw.decode())
        return GatewayGrant(
            token=str(data["token"]),
            headers=dict(data["headers"]),
            expires_at=float(data["expires_at"]),
            gateway_url=str(data["gateway_url"]),
        )
    except Exception:  # unreadable (key rotation, old format): treat as absent and re-mint
        return None


async def _store_write(store: StateStore, account_id: int, grant: GatewayGrant) -> None:
    ttl = grant.expires_at - time.time()
    if ttl <= 0:
        return
    payload = encrypt_json(
        {
            "token": grant.token,
            "headers": grant.headers,
            "expires_at": grant.expires_at,
            "gateway_url": grant.gateway_url,
        }
    )
    await store.set(_key(account_id), payload.encode(), ttl=ttl)


def _ok(grant: GatewayGrant | None, now: float, rejected: str | None, margin: float = SERVE_MARGIN) -> bool:
    return grant is not None and grant.token != rejected and grant.fresh(now, margin)


async def gitlab_gateway_grant(
    *,
    account_id: int,
    store: StateStore,
    client: httpx.AsyncClient,
    rejected: str | None = None,
    min_life: float = SERVE_MARGIN,
) -> GatewayGrant:
    """A gateway grant valid for at least `min_life` seconds, minting only when none is.

    `rejected`: a token the gateway just refused (401); it is never returned again.
    """
    now = time.time()
    grant = _local.get(account_id)
    if _ok(grant, now, rejected, min_life):
        return grant  # type: ignore[return-value]
    grant = await _store_read(store, account_id)
    if _ok(grant, now, rejected, min_life):
        _local[account_id] = grant  # type: ignore[assignment]
        return grant  # type: ignore[return-value]
    if grant is None and rejected is None:
        row = await db_call(gitlab_gateway_token_read, account_id=account_id)
        if row is not None:
            grant = GatewayGrant(token=row[0], headers=row[1], expires_at=row[2], gateway_url=row[3])
            if _ok(grant, now, rejected, min_life):
                await _store_write(store, account_id, grant)
                _local[account_id] = grant
                return grant
    return await _mint_single_flight(account_id, store, client, rejected, min_life, fallback=grant)


async def gitlab_gateway_grant_reject(*, account_id: int, store: StateStore, token: str) -> None:
    """The gateway refused `token`: forget it everywhere (but never a newer token)."""
    if (local := _local.get(account_id)) is not None and local.token == token:
        _local.pop(account_id, None)
    stored = await _store_read(store, account_id)
    if stored is not None and stored.token == token:
        await store.delete(_key(account_id))
    await db_call(gitlab_gateway_token_drop, account_id=account_id, token=token)


async def _raise_recorded_error(store: StateStore, account_id: int) -> None:
    raw = await store.get(_mint_error_key(account_id))
    if raw is not None:
        raise GitLabError.from_json(orjson.loads(raw))


async def _mint_single_flight(
    account_id: int,
    store: StateStore,
    client: httpx.AsyncClient,
    rejected: str | None,
    min_life: float,
    fallback: GatewayGrant | None,
) -> GatewayGrant:
    deadline = time.monotonic() + _MINT_WAIT
    lock_key = f"gitlab:mint:{account_id}"
    while True:
        backoff = await store.ttl(_backoff_key(account_id))
        if backoff is not None and backoff > 0:
            # Rate limited: a token that still works beats no token (docs/protocols/gitlab-duo.md#errors "serve from
            # cached UJWT").
            if _ok(fallback, time.time(), rejected, _LAST_RESORT_MARGIN):
                return fallback  # type: ignore[return-value]
            raise GitLabError(
                f"gateway token minting is rate limited by GitLab; retrying in {backoff:.0f} s",
                kind=GitLabError.RATE_LIMITED,
                status=429,
                retry_after=backoff,
            )
        await _raise_recorded_error(store, account_id)
        try:
            async with store.lock(lock_key, ttl=_MINT_LOCK_TTL):
                # Double-check under the lock: the previous holder may have just minted.
                grant = await _store_read(store, account_id)
                if _ok(grant, time.time(), rejected, min_life):
                    _local[account_id] = grant  # type: ignore[assignment]
                    return grant  # type: ignore[return-value]
                try:
                    grant = await _mint(account_id, store, client)
                except GitLabError as exc:
                    if exc.kind == GitLabError.RATE_LIMITED:
                        wait = exc.retry_after or _MINT_BACKOFF_DEFAULT
                        await store.set(_backoff_key(account_id), b"1", ttl=wait)
                        if _ok(fallback, time.time(), rejected, _LAST_RESORT_MARGIN):
                            return fallback  # type: ignore[return-value]
                    else:
                        await store.set(_mint_error_key(account_id), orjson.dumps(exc.to_json()), ttl=_MINT_ERROR_TTL)
                    raise
                return grant
        except LockNotAcquired:
            pass
        # Another process is minting: wait for its result instead of minting in parallel.
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            grant = await _store_read(store, account_id)
            if _ok(grant, time.time(), rejected, min_life):
                _local[account_id] = grant  # type: ignore[assignment]
                return grant  # type: ignore[return-value]
            await _raise_recorded_error(store, account_id)
            if await store.get(f"lock:{lock_key}") is None:
                break  # the minter finished without a usable grant (or died): try ourselves
        else:
            raise GitLabError("timed out waiting for the gateway token mint", kind=GitLabError.MINT_FAILED)


@counts_refresh("gitlab_gateway")
async def _mint(account_id: int, store: StateStore, client: httpx.AsyncClient) -> GatewayGrant:
    account = await db_call(gitlab_account_load, account_id)
    token, kind = await gitlab_access_token(account_id=account_id, store=store, client=client)
    reply = await gl.request(client, "POST", account.instance_url + gl.GRANT_PATH, token=token)
    if reply.status == 401 and kind == CredentialKind.OAUTH:
        # Revoked or rotated elsewhere: one forced refresh, one retry (docs/protocols/gitlab-duo.md#errors).
        token, kind = await gitlab_access_token(account_id=account_id, store=store, client=client, rejected=token)
        reply = await gl.request(client, "POST", account.instance_url + gl.GRANT_PATH, token=token)
    if not reply.ok:
        error = await grant_error(reply, instance_url=account.instance_url, client=client, token=token)
        if error.account_state:
            await db_call(
                gitlab_account_state_set, account_id=account_id, state=error.account_state, message=error.message
            )
        raise error
    grant = grant_from_reply(reply.body, gateway_url=account.gateway_url)
    await db_call(grant_save, account_id, grant)
    await _store_write(store, account_id, grant)
    _local[account_id] = grant
    if account.state in (AccountState.NOT_ENTITLED, AccountState.AUTH_FAILED):
        # A successful mint proves the entitlement is back (re-probe, docs/protocols/gitlab-duo.md#errors).
        await db_call(gitlab_account_state_set, account_id=account_id, state=AccountState.ACTIVE)
    return grant


def grant_from_reply(body: object, *, gateway_url: str) -> GatewayGrant:
    # docs/protocols/gitlab-duo.md#duo-entitlement-and-the-gateway-grant: usable only with both `token` and `headers`.
    if not isinstance(body, dict) or not body.get("token") or not isinstance(body.get("headers"), dict):
        raise GitLabError(
            "GitLab answered the third-party-agents grant without a token and headers",
            kind=GitLabError.MINT_FAILED,
            status=502,
        )
    headers = {str(k): str(v) for k, v in body["headers"].items() if str(k).lower() not in _DROPPED_HEADERS}
    expires_at = body.get("expires_at")
    # docs/protocols/gitlab-duo.md#lifetimes-and-caching: one hour is the documented lifetime when GitLab omits the
    # expiry.
    exp = float(expires_at) if isinstance(expires_at, int | float) else time.time() + 3600.0
    return GatewayGrant(token=str(body["token"]), headers=headers, expires_at=exp, gateway_url=gateway_url)


def grant_save(account_id: int, grant: GatewayGrant) -> None:
    """Keep a minted grant in the database too, so a restart does not mint again."""
    gitlab_gateway_token_save(
        account_id=account_id,
        token=grant.token,
        headers=grant.headers,
        expires_at=grant.expires_at,
        gateway_url=grant.gateway_url,
    )


# A refused grant that names its cause: (status, any of these in GitLab's text (none: any
# text), our message, kind, the account state it implies). First match wins.
_GRANT_REFUSALS: tuple[tuple[int, tuple[str, ...], str, str, str], ...] = (
    # 401 on the grant while /user answers 200 = valid token without Duo
    # (docs/protocols/gitlab-duo.md#duo-entitlement-and-the-gateway-grant).
    (401, (), "token valid but this user has no GitLab Duo access", GitLabError.NO_DUO, AccountState.NOT_ENTITLED),
    (403, ("scope",), "token lacks the api scope", GitLabError.MISSING_SCOPE, AccountState.AUTH_FAILED),
    (
        403,
        ("direct connections",),
        "direct connections are disabled on this instance",
        GitLabError.DIRECT_DISABLED,
        AccountState.NOT_ENTITLED,
    ),
    (
        403,
        (),
        "the third-party agent grant is not enabled for this user/instance",
        GitLabError.GRANT_DISABLED,
        AccountState.NOT_ENTITLED,
    ),
    (
        404,
        (),
        "the third-party agent grant is not enabled for this user/instance (endpoint not found: "
        "GitLab too old or the Duo switch is off)",
        GitLabError.GRANT_DISABLED,
        AccountState.NOT_ENTITLED,
    ),
)


async def grant_error(reply: gl.Reply, *, instance_url: str, client: httpx.AsyncClient, token: str) -> GitLabError:
    """Name the cause of a refused third-party-agents grant
    (docs/protocols/gitlab-duo.md#duo-entitlement-and-the-gateway-grant, docs/protocols/gitlab-duo.md#errors)."""
    status, text = reply.status, reply.text
    lowered = text.lower()
    if status == 401:
        user = await gl.request(client, "GET", f"{instance_url}/api/v4/user", token=token)
        if not user.ok:
            return GitLabError(
                "GitLab rejected the token (401 on /api/v4/user too): revoked or expired",
                kind=GitLabError.AUTH_FAILED,
                status=status,
                upstream_text=user.text or text,
                account_state=AccountState.AUTH_FAILED,
            )
    for code, needles, message, kind, state in _GRANT_REFUSALS:
        if status == code and (not needles or any(n in lowered for n in needles)):
            return reply.error(message, kind, account_state=state)
    if status == 429:
        wait = retry_after_seconds(reply.headers)
        return GitLabError(
            "GitLab rate-limited gateway token minting",
            kind=GitLabError.RATE_LIMITED,
            status=status,
            upstream_text=text,
            retry_after=wait if wait is not None else _MINT_BACKOFF_DEFAULT,
        )
    return reply.error(f"GitLab could not mint a gateway token (HTTP {status})", GitLabError.MINT_FAILED)
