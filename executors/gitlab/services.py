"""GitLab Duo account services: OAuth (device grant, authorization code + PKCE), PAT, probes,
credential refresh and the refresh-ahead of gateway tokens.

Sync functions are for commands, admin and Celery; they run the (async) HTTP part in a private
event loop with a short-lived client. Pending login state (device code, PKCE verifier, state)
lives in the state store, encrypted, with the flow's TTL: any process can finish a flow another
started, and nothing is lost or leaked in one process' memory.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypedDict, TypeVar, Unpack
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from django.db import transaction

from accounts.crypto import decrypt_json, encrypt_json
from accounts.models import AccountState, Credential, UpstreamAccount
from accounts.services import DuplicateIdentity, account_create, account_credential_logged, cache_version_bump
from accounts.validators import upstream_url_validate
from executors.gitlab import KIND, CredentialKind
from executors.gitlab import client as gl
from executors.gitlab.catalog import gitlab_model_names
from executors.gitlab.config import DEFAULT_GATEWAY_URL, DEFAULT_INSTANCE_URL, DEFAULT_SCOPES, gitlab_account_load
from executors.gitlab.exceptions import GitLabError, LoginPending
from executors.gitlab.grants import (
    AHEAD_WINDOW,
    GatewayGrant,
    _store_write,
    gitlab_gateway_grant,
    grant_error,
    grant_from_reply,
    grant_local_forget,
    grant_save,
)
from executors.gitlab.oauth import gitlab_access_token, token_secret
from executors.gitlab.records import gitlab_account_state_set
from executors.gitlab.selectors import gitlab_account_ids_for_refresh
from infra.db import db_call
from statestore import StateStore
from statestore.factory import call_sync

log = logging.getLogger(__name__)
T = TypeVar("T")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_PKCE_TTL = 900.0  # an operator pastes the callback within 15 minutes or starts again


def _run(fn: Callable[[StateStore, httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run async GitLab I/O from sync code with its own client (closed afterwards)."""

    async def run(store: StateStore) -> T:
        async with gl.instance_client() as client:
            return await fn(store, client)

    return call_sync(run)


# --------------------------------------------------------------------------- flow state


def _flow_key(flow_id: str) -> str:
    return f"gitlab:login:{flow_id}"


def _flow_save(flow_id: str, record: dict[str, Any], ttl: float) -> None:
    payload = encrypt_json(record).encode()  # holds a client secret and a device code / verifier

    async def put(store: StateStore) -> bool:
        return await store.set(_flow_key(flow_id), payload, ttl=max(1.0, ttl))

    call_sync(put)


def _flow_load(flow_id: str) -> tuple[dict[str, Any], float]:
    async def get(store: StateStore) -> tuple[bytes | None, float | None]:
        return await store.get(_flow_key(flow_id)), await store.ttl(_flow_key(flow_id))

    raw, ttl = call_sync(get)
    if raw is None:
        raise GitLabError("this login flow is unknown or expired; start it again", kind=GitLabError.LOGIN)
    return decrypt_json(raw.decode()), ttl or 1.0


def _flow_drop(flow_id: str) -> None:
    async def drop(store: StateStore) -> int:
        return await store.delete(_flow_key(flow_id))

    call_sync(drop)


class AccountSettings(TypedDict, total=False):
    """What every GitLab login saves with the account (defaults: gitlab.com, GitLab's gateway,
    priority 0, weight 1, refused without Duo, refused as a duplicate)."""

    instance_url: str
    gateway_url: str
    priority: int
    weight: int
    keep_without_duo: bool
    allow_duplicate: bool


def _account_settings(label: str, settings: AccountSettings) -> dict[str, Any]:
    # The URLs pass the SSRF guard before anything contacts them.
    instance_url = upstream_url_validate(settings.get("instance_url", DEFAULT_INSTANCE_URL))
    gateway_url = upstream_url_validate(settings.get("gateway_url", DEFAULT_GATEWAY_URL))
    return {
        "allow_duplicate": settings.get("allow_duplicate", False),
        "label": label,
        "instance_url": (instance_url or DEFAULT_INSTANCE_URL).rstrip("/"),
        "gateway_url": (gateway_url or DEFAULT_GATEWAY_URL).rstrip("/"),
        "priority": settings.get("priority", 0),
        "weight": settings.get("weight", 1),
        "keep_without_duo": settings.get("keep_without_duo", False),
    }


# ------------------------------------------------------------------------ device grant


@dataclass(frozen=True, slots=True)
class DeviceStart:
    flow_id: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    interval: float
    expires_in: float


def gitlab_oauth_device_start(
    *,
    label: str,
    client_id: str,
    client_secret: str = "",
    scopes: str = DEFAULT_SCOPES,
    **settings: Unpack[AccountSettings],
) -> DeviceStart:
    """Start the device authorization grant (docs/protocols/gitlab-duo.md#sign-in-and-tokens); show
    `user_code`/`verification_uri` to a human."""
    record = _account_settings(label, settings)
    base = record["instance_url"]
    form = {"client_id": client_id, "scope": scopes}
    if client_secret:
        form["client_secret"] = client_secret
    reply = _run(lambda _s, c: gl.request(c, "POST", f"{base}/oauth/authorize_device", form=form))
    if not reply.ok or not isinstance(reply.body, dict) or "device_code" not in reply.body:
        hint = " (device grant needs GitLab 17.3+)" if reply.status == 404 else ""
        raise reply.error(f"GitLab refused to start the device login (HTTP {reply.status}){hint}")
    body = reply.body
    expires_in = float(body.get("expires_in") or 300)
    interval = float(body.get("interval") or 5)
    flow_id = secrets.token_urlsafe(24)
    record.update(
        kind="device",
        device_code=body["device_code"],
        interval=interval,
        oauth={"client_id": client_id, "scopes": scopes},
        client_secret=client_secret,
        next_poll_at=0.0,
    )
    _flow_save(flow_id, record, expires_in)
    return DeviceStart(
        flow_id=flow_id,
        user_code=str(body.get("user_code", "")),
        verification_uri=str(body.get("verification_uri", f"{base}/oauth/device")),
        verification_uri_complete=str(body.get("verification_uri_complete") or body.get("verification_uri", "")),
        interval=interval,
        expires_in=expires_in,
    )


def gitlab_oauth_device_poll(*, flow_id: str, actor: Any | None = None) -> UpstreamAccount:
    """One poll of the token endpoint. Raises LoginPending (poll again after `.interval`),
    GitLabError (expired, denied, no Duo...), or returns the created account."""
    record, ttl = _flow_load(flow_id)
    form = {"grant_type": DEVICE_GRANT, "device_code": record["device_code"], "client_id": record["oauth"]["client_id"]}
    if record.get("client_secret"):
        form["client_secret"] = record["client_secret"]
    base = record["instance_url"]
    reply = _run(lambda _s, c: gl.request(c, "POST", f"{base}/oauth/token", form=form))
    if reply.ok:
        _flow_drop(flow_id)  # a device code is single-use
        return _oauth_finish(record, reply.body, actor=actor)
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    if error == "authorization_pending":
        raise LoginPending(record["interval"])
    if error == "slow_down":
        # RFC 8628: add 5 s to the interval for this and every later poll.
        record["interval"] = float(record["interval"]) + 5.0
        _flow_save(flow_id, record, ttl)
        raise LoginPending(record["interval"], slow_down=True)
    _flow_drop(flow_id)
    if error == "expired_token":
        raise reply.error("the device code expired before it was approved; start again")
    if error == "access_denied":
        raise reply.error("the GitLab user refused the authorization request")
    raise reply.error(f"GitLab refused the device login (HTTP {reply.status})")


# ------------------------------------------------------------------- authorization code


@dataclass(frozen=True, slots=True)
class PkceStart:
    flow_id: str  # also the OAuth `state`
    authorize_url: str


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)  # 86 chars, inside RFC 7636's 43-128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def gitlab_oauth_pkce_start(
    *,
    label: str,
    client_id: str,
    redirect_uri: str,
    client_secret: str = "",
    scopes: str = DEFAULT_SCOPES,
    root_namespace_id: str = "",
    **settings: Unpack[AccountSettings],
) -> PkceStart:
    """Authorization code + PKCE (S256), paste-callback style (docs/protocols/gitlab-duo.md#sign-in-and-tokens): open
    `authorize_url`,
    approve, then hand the URL the browser was redirected to to `gitlab_oauth_pkce_finish`."""
    record = _account_settings(label, settings)
    verifier, challenge = _pkce_pair()
    state = secrets.token_urlsafe(24)
    query = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "state": state,
        "scope": scopes,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if root_namespace_id:
        query["root_namespace_id"] = root_namespace_id  # group SAML SSO
    record.update(
        kind="pkce",
        verifier=verifier,
        oauth={"client_id": client_id, "redirect_uri": redirect_uri, "scopes": scopes},
        client_secret=client_secret,
    )
    _flow_save(state, record, _PKCE_TTL)
    return PkceStart(flow_id=state, authorize_url=f"{record['instance_url']}/oauth/authorize?{urlencode(query)}")


def gitlab_oauth_pkce_finish(*, callback: str, flow_id: str = "", actor: Any | None = None) -> UpstreamAccount:
    """Finish with the pasted redirect URL (`...?code=...&state=...`) or a bare code + flow_id."""
    callback = callback.strip()
    code, state = callback, flow_id
    if "code=" in callback or "error=" in callback:
        query = parse_qs(urlsplit(callback).query if "://" in callback or "?" in callback else callback)
        if "error" in query:
            desc = (query.get("error_description") or [""])[0]
            raise GitLabError(
                f"GitLab did not authorize the application: {query['error'][0]}",
                kind=GitLabError.LOGIN,
                upstream_text=desc,
            )
        code = (query.get("code") or [""])[0]
        returned_state = (query.get("state") or [""])[0]
        if flow_id and returned_state and returned_state != flow_id:
            raise GitLabError("the callback's state does not match this login (CSRF check)", kind=GitLabError.LOGIN)
        state = returned_state or flow_id
    if not code or not state:
        raise GitLabError(
            "paste the full redirected URL (with code and state), or the code and its flow id", kind=GitLabError.LOGIN
        )
    record, _ttl = _flow_load(state)
    if record.get("kind") != "pkce":
        raise GitLabError("this flow id is not an authorization-code login", kind=GitLabError.LOGIN)
    _flow_drop(state)  # the verifier is single-use, success or not
    form = {
        "grant_type": "authorization_code",
        "client_id": record["oauth"]["client_id"],
        "code": code,
        "redirect_uri": record["oauth"]["redirect_uri"],
        "code_verifier": record["verifier"],
    }
    if record.get("client_secret"):
        form["client_secret"] = record["client_secret"]
    base = record["instance_url"]
    reply = _run(lambda _s, c: gl.request(c, "POST", f"{base}/oauth/token", form=form))
    if not reply.ok:
        raise reply.error(f"GitLab refused the authorization code (HTTP {reply.status})")
    return _oauth_finish(record, reply.body, actor=actor)


# --------------------------------------------------------------------- finishing logins


@dataclass(slots=True)
class _Probe:
    user: dict[str, Any]
    grant: GatewayGrant | None
    error: GitLabError | None


async def _probe(client: httpx.AsyncClient, *, instance_url: str, gateway_url: str, token: str) -> _Probe:
    """Identity, then the Duo entitlement probe: mint the third-party-agents grant
    (docs/protocols/gitlab-duo.md#duo-entitlement-and-the-gateway-grant).
    A valid token says nothing about Duo; the grant is the one thing the proxy needs."""
    user = await gl.request(client, "GET", f"{instance_url}/api/v4/user", token=token)
    if not user.ok:
        raise user.error(f"GitLab rejected the token on /api/v4/user (HTTP {user.status})", GitLabError.AUTH_FAILED)
    body = user.body if isinstance(user.body, dict) else {}
    identity = {k: body.get(k) for k in ("id", "username", "name") if k in body}
    reply = await gl.request(client, "POST", instance_url + gl.GRANT_PATH, token=token)
    if reply.ok:
        return _Probe(identity, grant_from_reply(reply.body, gateway_url=gateway_url), None)
    return _Probe(identity, None, await grant_error(reply, instance_url=instance_url, client=client, token=token))


def _oauth_finish(record: dict[str, Any], token_body: Any, *, actor: Any | None) -> UpstreamAccount:
    secret, expires_at = token_secret(token_body, client_secret=record.get("client_secret") or None)
    probe = _run(
        lambda _s, c: _probe(
            c, instance_url=record["instance_url"], gateway_url=record["gateway_url"], token=secret["access_token"]
        )
    )
    oauth = {k: v for k, v in record["oauth"].items() if v}
    config = {"auth": "oauth", "oauth": oauth}
    return _account_save(record, CredentialKind.OAUTH, secret, expires_at, config, probe, actor=actor)


def _gitlab_duplicate(instance_url: str, user: dict[str, Any], *, label: str) -> str | None:
    """Label of another GitLab account signed in as the same user on the same instance, if any."""
    user_id = user.get("id") if isinstance(user, dict) else None
    if user_id is None:
        return None  # the probe could not tell who this is: nothing to compare
    instance = instance_url.rstrip("/")
    for other in UpstreamAccount.objects.filter(provider=KIND).exclude(label=label):
        config = other.provider_config or {}
        if (
            str(config.get("instance_url", "")).rstrip("/") == instance
            and (config.get("user") or {}).get("id") == user_id
        ):
            return other.label
    return None


def _account_save(
    record: dict[str, Any],
    kind: str,
    secret: dict[str, Any],
    expires_at: float | None,
    extra_config: dict[str, Any],
    probe: _Probe,
    *,
    actor: Any | None,
) -> UpstreamAccount:
    if probe.error is not None and not record.get("keep_without_duo"):
        raise probe.error
    label = record["label"]
    config: dict[str, Any] = {
        "instance_url": record["instance_url"],
        "gateway_url": record["gateway_url"],
        "user": probe.user,
        **extra_config,
    }
    state: str = AccountState.ACTIVE
    last_error = ""
    if probe.error is not None:
        state = probe.error.account_state or AccountState.NOT_ENTITLED
        last_error = probe.error.message
    expires_dt = None if expires_at is None else datetime.fromtimestamp(expires_at, tz=UTC)
    with transaction.atomic():
        account = UpstreamAccount.objects.select_for_update().filter(label=label).first()
        if account is not None:
            if account.provider != KIND:
                raise GitLabError(f"label {label!r} belongs to a non-GitLab account", kind=GitLabError.LOGIN)
            # Re-login of an existing account: keep the admin's model/transport overrides.
            config = {**(account.provider_config or {}), **config}
            Credential.objects.update_or_create(
                account=account, defaults={"kind": kind, "secret": secret, "expires_at": expires_dt}
            )
            account_credential_logged(account=account, created=False, actor=actor, credential_kind=kind)
        else:
            if not record.get("allow_duplicate"):
                existing = _gitlab_duplicate(record["instance_url"], probe.user, label=label)
                if existing is not None:
                    who = probe.user.get("username") or probe.user.get("id")
                    raise DuplicateIdentity(
                        identity=f"GitLab user {who} on {record['instance_url']}", existing=existing
                    )
            account = account_create(
                label=label,
                provider=KIND,
                base_url=record["instance_url"],
                model_names=(),
                credential_kind=kind,
                secret=secret,
                priority=int(record.get("priority", 0)),
                weight=int(record.get("weight", 1)),
                actor=actor,
            )
            Credential.objects.filter(account=account).update(expires_at=expires_dt)
        account.provider_config = config
        account.base_url = record["instance_url"]
        account.model_names = gitlab_model_names(config)
        account.state = state
        account.last_error = last_error
        account.save()
        transaction.on_commit(cache_version_bump)
    grant = probe.grant
    grant_local_forget(account.id)
    call_sync(lambda store: store.delete(f"gitlab:mint-error:{account.id}"))
    if grant is not None:
        # The probe minted a real grant: keep it rather than minting again on the first request.
        grant_save(account.id, grant)
        call_sync(lambda store: _store_write(store, account.id, grant))
    else:
        call_sync(lambda store: store.delete(f"gitlab:grant:{account.id}"))
    return UpstreamAccount.objects.select_related("credential").get(pk=account.id)


# ------------------------------------------------------------------------------- PAT


@dataclass(frozen=True, slots=True)
class PatInfo:
    scopes: tuple[str, ...]
    expires_at: date | None
    name: str


async def _pat_check(client: httpx.AsyncClient, *, instance_url: str, token: str) -> PatInfo:
    """docs/protocols/gitlab-duo.md#sign-in-and-tokens step 1: the token is active, has a usable scope and has not
    expired."""
    reply = await gl.request(client, "GET", f"{instance_url}/api/v4/personal_access_tokens/self", token=token)
    if reply.status == 401:
        raise GitLabError(
            "GitLab rejected the token: unknown, revoked or expired",
            kind=GitLabError.AUTH_FAILED,
            status=401,
            upstream_text=reply.text,
        )
    if reply.status == 403 and "scope" in reply.text.lower():
        raise GitLabError(
            "token lacks the api scope", kind=GitLabError.MISSING_SCOPE, status=403, upstream_text=reply.text
        )
    if not reply.ok or not isinstance(reply.body, dict):
        raise reply.error(f"could not read the token's details (HTTP {reply.status})")
    body = reply.body
    if body.get("active") is False or body.get("revoked") is True:
        raise GitLabError("the token is revoked or no longer active", kind=GitLabError.AUTH_FAILED)
    scopes = tuple(str(s) for s in body.get("scopes") or ())
    # `api` is what GitLab's own clients require; `ai_features` alone is the documented minimum
    # for the grants and is accepted.
    if "api" not in scopes and "ai_features" not in scopes:
        raise GitLabError(
            f"token lacks the api scope (it has: {', '.join(scopes) or 'none'})", kind=GitLabError.MISSING_SCOPE
        )
    expires: date | None = None
    if isinstance(body.get("expires_at"), str):
        expires = date.fromisoformat(body["expires_at"][:10])
        if expires < datetime.now(tz=UTC).date():
            raise GitLabError(f"the token expired on {expires.isoformat()}", kind=GitLabError.AUTH_FAILED)
    return PatInfo(scopes=scopes, expires_at=expires, name=str(body.get("name", "")))


def gitlab_pat_add(
    *,
    label: str,
    token: str,
    actor: Any | None = None,
    **settings: Unpack[AccountSettings],
) -> UpstreamAccount:
    """Validate a personal access token, probe Duo, and add (or re-key) the account.

    Raises GitLabError with a specific cause: rejected token, missing scope, no Duo, direct
    connections disabled, grant not enabled (unless keep_without_duo: then the account is saved
    in state not_entitled with that reason).
    """
    record = _account_settings(label, settings)
    token = token.strip()

    async def check(_store: StateStore, client: httpx.AsyncClient) -> tuple[PatInfo, _Probe]:
        info = await _pat_check(client, instance_url=record["instance_url"], token=token)
        probe = await _probe(
            client, instance_url=record["instance_url"], gateway_url=record["gateway_url"], token=token
        )
        return info, probe

    info, probe = _run(check)
    expires_at = None
    if info.expires_at is not None:
        expires_at = datetime(info.expires_at.year, info.expires_at.month, info.expires_at.day, tzinfo=UTC).timestamp()
    config = {
        "auth": "pat",
        "pat": {
            "scopes": list(info.scopes),
            "name": info.name,
            "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        },
    }
    return _account_save(record, CredentialKind.PAT, {"token": token}, expires_at, config, probe, actor=actor)


# ---------------------------------------------------------------- refresh and probing


def gitlab_credential_refresh(*, account_id: int) -> bool:
    """Force-refresh an OAuth account's pair now (admin action / command); True if it changed."""

    async def run(store: StateStore, client: httpx.AsyncClient) -> bool:
        before = await db_call(gitlab_account_load, account_id)
        if before.kind != CredentialKind.OAUTH:
            return False
        token, _ = await gitlab_access_token(
            account_id=account_id, store=store, client=client, rejected=before.secret.get("access_token")
        )
        return token != before.secret.get("access_token")

    return _run(run)


async def gitlab_tokens_refresh_due(
    *, store: StateStore, client: httpx.AsyncClient | None = None, within: float = AHEAD_WINDOW
) -> dict[str, int]:
    """Refresh-ahead: mint for every GitLab account whose gateway token expires within `within`
    seconds (the request path then never waits for a mint). Accounts whose token lives longer
    cost no GitLab call. Failures are recorded on the account by the mint and do not stop others."""
    ids = await db_call(gitlab_account_ids_for_refresh)
    counts = {"accounts": len(ids), "ok": 0, "failed": 0}

    async def one(c: httpx.AsyncClient) -> None:
        for account_id in ids:
            try:
                await gitlab_gateway_grant(account_id=account_id, store=store, client=c, min_life=within)
                counts["ok"] += 1
            except GitLabError as exc:
                counts["failed"] += 1
                log.warning("gitlab refresh-ahead failed account=%s kind=%s: %s", account_id, exc.kind, exc.message)

    if client is not None:
        await one(client)
    else:
        async with gl.instance_client() as c:
            await one(c)
    return counts


def gitlab_account_probe(*, account_id: int) -> GatewayGrant:
    """Re-probe one account now (mint a grant); sets the account state from the outcome."""

    async def run(store: StateStore, client: httpx.AsyncClient) -> GatewayGrant:
        await store.delete(f"gitlab:mint-error:{account_id}")
        return await gitlab_gateway_grant(account_id=account_id, store=store, client=client, min_life=AHEAD_WINDOW)

    return _run(run)


def gitlab_account_state_reset(*, account_id: int) -> None:
    gitlab_account_state_set(account_id=account_id, state=AccountState.ACTIVE)


__all__ = [
    "AccountSettings",
    "DeviceStart",
    "GitLabError",
    "LoginPending",
    "PatInfo",
    "PkceStart",
    "gitlab_account_probe",
    "gitlab_credential_refresh",
    "gitlab_oauth_device_poll",
    "gitlab_oauth_device_start",
    "gitlab_oauth_pkce_finish",
    "gitlab_oauth_pkce_start",
    "gitlab_pat_add",
    "gitlab_tokens_refresh_due",
]
