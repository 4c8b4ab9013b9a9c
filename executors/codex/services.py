"""Codex (ChatGPT sign-in) account services: login flows, import, and rotating refresh.

Credential secret layout (encrypted `Credential.secret`, kind "chatgpt"):
    access_token, refresh_token, id_token, account_id (chatgpt_account_id), plan_type, email,
    last_refresh (epoch s), expires_at (epoch s or None), installation_id (mirror of the
    account's column, so the executor needs no extra query).

Refresh tokens rotate on every use and a reused one is dead (docs/protocols/codex.md#token-refresh), so refresh is
single-flight per account across processes (a state-store lock), persists the new tokens in
one transaction under a row lock *before* anyone uses them, and on `invalid_grant` /
`refresh_token_reused` re-reads storage to tell "a sibling already rotated it" from "dead".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from django.db import transaction
from django.utils import timezone

from accounts.models import AccountState, Credential, UpstreamAccount
from accounts.services import DuplicateIdentity, account_credential_logged, cache_version_bump
from accounts.validators import provider_config_validate, upstream_url_validate
from executors.codex import KIND, CredentialKind, oauth
from executors.codex.config import DEFAULT_BASE_URL, DEFAULT_MODELS, CodexConfig, codex_config
from executors.codex.jwt import ChatGPTClaims, claims_or_none
from infra.db import db_call
from observability.metrics import counts_refresh
from statestore import LockNotAcquired, StateStore
from statestore.factory import call_sync

log = logging.getLogger(__name__)

PENDING_TTL_SECONDS = 15 * 60  # device codes live 15 min; a pasted callback is quicker
_LOCK_TTL_SECONDS = 60.0  # bounds how long a crashed refresher blocks the account
# docs/protocols/codex.md#token-refresh: refresh when exp is unreadable and last_refresh is older
_STALE_AFTER_SECONDS = 8 * 86400


class CodexLoginError(Exception):
    pass


class CodexLoginPending(CodexLoginError):
    """A single device-code poll found the code not approved yet; poll again after `interval`."""

    def __init__(self, interval: float) -> None:
        super().__init__("the device code is not approved yet")
        self.interval = interval


class CodexRefreshError(Exception):
    """Refresh failed. `terminal`: the credential is dead and the account was marked auth_failed."""

    def __init__(self, message: str, *, terminal: bool, code: str = "") -> None:
        super().__init__(message)
        self.terminal = terminal
        self.code = code


# --------------------------------------------------------------------------- storing tokens


def _epoch(value: Any) -> float | None:
    """Expiry/refresh instants arrive as unix seconds (number or string), ISO strings, or 0."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def _as_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


def _identity(access: ChatGPTClaims | None, id_claims: ChatGPTClaims | None, pin_account_id: str | None) -> str:
    access_id = access.account_id if access else None
    id_token_id = id_claims.account_id if id_claims else None
    if access_id and id_token_id and access_id != id_token_id and not pin_account_id:
        # docs/protocols/codex.md#token-claims: tokens from two ChatGPT accounts are almost certainly a botched export.
        raise CodexLoginError(
            f"the access token names ChatGPT account {access_id} but the id token names {id_token_id}; "
            "pin the intended one with --account-id"
        )
    account_id = pin_account_id or access_id or id_token_id
    if not account_id:
        raise CodexLoginError("no chatgpt_account_id in the tokens; pass --account-id")
    return account_id


def codex_secret_build(
    *,
    access_token: str,
    refresh_token: str,
    id_token: str | None,
    last_refresh: float | None = None,
    expires_at: float | None = None,
    pin_account_id: str | None = None,
) -> dict[str, Any]:
    access = claims_or_none(access_token)
    id_claims = claims_or_none(id_token)
    account_id = _identity(access, id_claims, pin_account_id)
    plan = (access.plan_type if access else None) or (id_claims.plan_type if id_claims else None)
    email = (id_claims.email if id_claims else None) or (access.email if access else None)
    exp = (access.expires_at if access else None) or expires_at
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "id_token": id_token or "",
        "account_id": account_id,
        "plan_type": plan or "",
        "email": email or "",
        "fedramp": bool(access and access.fedramp),
        "last_refresh": last_refresh if last_refresh is not None else time.time(),
        "expires_at": exp,
    }


def _codex_duplicate(chatgpt_account_id: str, *, label: str) -> str | None:
    """Label of another Codex account signed in to the same ChatGPT account, if any."""
    for cred in Credential.objects.filter(account__provider=KIND).select_related("account"):
        if cred.account.label != label and _secret_of(cred).get("account_id") == chatgpt_account_id:
            return cred.account.label
    return None


def codex_account_save(
    *,
    label: str,
    secret: dict[str, Any],
    base_url: str = DEFAULT_BASE_URL,
    model_names: Iterable[str] = DEFAULT_MODELS,
    provider_config: Mapping[str, Any] | None = None,
    priority: int = 0,
    actor: Any | None = None,
    allow_duplicate: bool = False,
) -> UpstreamAccount:
    """Create the Codex account `label`, or replace the credential of the existing one.

    A new account gets a fresh random installation id (the model default, docs/protocols/codex.md#identity); a
    re-login keeps it, so the account keeps looking like the same install. A new label for a
    ChatGPT account that is already here raises DuplicateIdentity unless allow_duplicate.
    """
    base_url = upstream_url_validate(base_url)  # SSRF guard (accounts/validators.py)
    provider_config_validate(dict(provider_config or {}))  # auth_url and any other URL in it
    with transaction.atomic():
        account = UpstreamAccount.objects.select_for_update().filter(label=label).first()
        if account is not None and account.provider != KIND:
            raise CodexLoginError(f"account '{label}' exists and is not a Codex account")
        created = account is None
        if account is None and not allow_duplicate:
            existing = _codex_duplicate(str(secret.get("account_id") or ""), label=label)
            if existing is not None:
                raise DuplicateIdentity(identity=f"ChatGPT account {secret['account_id']}", existing=existing)
        if account is None:
            account = UpstreamAccount.objects.create(
                label=label,
                provider=KIND,
                base_url=base_url.rstrip("/"),
                model_names=sorted({m.strip() for m in model_names if m.strip()}),
                provider_config=dict(provider_config or {}),
                priority=priority,
            )
        else:
            account.base_url = base_url.rstrip("/")
            if provider_config:
                account.provider_config = {**account.provider_config, **provider_config}
            account.state = AccountState.ACTIVE
            account.last_error = ""
            account.save()
        stored = {**secret, "installation_id": str(account.installation_id)}
        Credential.objects.update_or_create(  # type: ignore[misc]  # the secret field stores dicts
            account=account,
            defaults={
                "kind": CredentialKind.CHATGPT,
                "secret": stored,
                "expires_at": _as_datetime(secret["expires_at"]),
            },
        )
        account_credential_logged(
            account=account, created=created, actor=actor, chatgpt_plan=secret.get("plan_type") or ""
        )
        transaction.on_commit(cache_version_bump)
    return account


# ------------------------------------------------------------------------- pending flows


def _pending_set(key: str, value: dict[str, Any]) -> None:
    async def put(store: StateStore) -> bool:
        return await store.set(key, orjson.dumps(value), ttl=PENDING_TTL_SECONDS)

    call_sync(put)


def _pending_get(key: str) -> dict[str, Any] | None:
    raw = call_sync(lambda store: store.get(key))
    return orjson.loads(raw) if raw else None


def _pending_pop(key: str) -> dict[str, Any] | None:
    async def take(store: StateStore) -> bytes | None:
        raw = await store.get(key)
        await store.delete(key)  # one use: a replayed callback must not create a second login
        return raw

    raw = call_sync(take)
    return orjson.loads(raw) if raw else None


@dataclass(frozen=True, slots=True)
class PkceStart:
    url: str
    state: str


def codex_pkce_start(
    *,
    label: str,
    base_url: str = DEFAULT_BASE_URL,
    model_names: Iterable[str] = DEFAULT_MODELS,
    provider_config: Mapping[str, Any] | None = None,
    workspace_id: str = "",
) -> PkceStart:
    """Paste-callback PKCE (docs/protocols/codex.md#sign-in-chatgpt-oauth): the operator opens `url`, then pastes the
    dead-localhost URL."""
    cfg = codex_config(provider_config)
    pair = oauth.pkce_pair()
    state = oauth.new_state()
    _pending_set(
        f"codex:pkce:{state}",
        {
            "verifier": pair.verifier,
            "label": label,
            "base_url": base_url,
            "models": list(model_names),
            "provider_config": dict(provider_config or {}),
        },
    )
    return PkceStart(
        url=oauth.authorize_url(cfg, state=state, challenge=pair.challenge, workspace_id=workspace_id), state=state
    )


def codex_pkce_complete(
    *, callback_url: str, pin_account_id: str | None = None, actor: Any | None = None, allow_duplicate: bool = False
) -> UpstreamAccount:
    params = oauth.parse_callback(callback_url)
    pending = _pending_pop(f"codex:pkce:{params.state}")
    if pending is None:
        raise CodexLoginError("unknown or expired sign-in (state does not match a pending login; start again)")
    cfg = codex_config(pending["provider_config"])
    tokens = oauth.exchange_code(
        cfg, code=params.code, verifier=pending["verifier"], redirect_uri=oauth.PKCE_REDIRECT_URI
    )
    return _save_tokens(tokens, pending, pin_account_id, actor=actor, allow_duplicate=allow_duplicate)


def _save_tokens(
    tokens: oauth.TokenSet,
    pending: dict[str, Any],
    pin_account_id: str | None,
    *,
    actor: Any | None = None,
    allow_duplicate: bool = False,
) -> UpstreamAccount:
    assert tokens.access_token and tokens.refresh_token  # checked by oauth.exchange_code
    expires = time.time() + tokens.expires_in if tokens.expires_in else None
    secret = codex_secret_build(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        id_token=tokens.id_token,
        expires_at=expires,
        pin_account_id=pin_account_id,
    )
    return codex_account_save(
        label=pending["label"],
        secret=secret,
        base_url=pending["base_url"],
        model_names=pending["models"],
        provider_config=pending["provider_config"],
        actor=actor,
        allow_duplicate=allow_duplicate,
    )


def codex_device_start(
    *,
    label: str,
    base_url: str = DEFAULT_BASE_URL,
    model_names: Iterable[str] = DEFAULT_MODELS,
    provider_config: Mapping[str, Any] | None = None,
) -> oauth.DeviceCode:
    """Device code (docs/protocols/codex.md#sign-in-chatgpt-oauth): show `verification_url` and `user_code`; then
    codex_device_complete."""
    cfg = codex_config(provider_config)
    code = oauth.device_start(cfg)
    _pending_set(
        f"codex:device:{code.device_auth_id}",
        {
            "user_code": code.user_code,
            "interval": code.interval,
            "label": label,
            "base_url": base_url,
            "models": list(model_names),
            "provider_config": dict(provider_config or {}),
        },
    )
    return code


def codex_device_complete(
    *,
    device_auth_id: str,
    timeout: float = PENDING_TTL_SECONDS,
    pin_account_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    actor: Any | None = None,
    allow_duplicate: bool = False,
) -> UpstreamAccount:
    """Poll until approved, then sign in. `timeout=0` polls exactly once and raises
    CodexLoginPending while not approved (the admin page polls once per request)."""
    key = f"codex:device:{device_auth_id}"
    single = timeout <= 0
    # A single attempt only reads the pending login: it must survive "not approved yet", keep
    # its original TTL (= the code's 15 minutes), and a concurrent poll must not lose it.
    pending = _pending_get(key) if single else _pending_pop(key)
    if pending is None:
        raise CodexLoginError("unknown or expired device login; start again")
    cfg = codex_config(pending["provider_config"])
    deadline = time.monotonic() + timeout
    while True:
        grant = oauth.device_poll_once(cfg, device_auth_id=device_auth_id, user_code=pending["user_code"])
        if grant is not None:
            break
        if single:
            raise CodexLoginPending(float(pending["interval"]))
        if time.monotonic() >= deadline:
            raise CodexLoginError("the device code was not approved in time")
        sleep(float(pending["interval"]))
    if single and _pending_pop(key) is None:
        raise CodexLoginError("this device login was already completed by another request")
    tokens = oauth.exchange_code(
        cfg, code=grant.authorization_code, verifier=grant.code_verifier, redirect_uri=oauth.device_redirect_uri(cfg)
    )
    return _save_tokens(tokens, pending, pin_account_id, actor=actor, allow_duplicate=allow_duplicate)


# ----------------------------------------------------------------------------- import


def _token_block(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Find the token fields in the formats of docs/protocols/codex.md#importing-authjson (CLI auth.json, flat files,
    bundles)."""
    tokens = data.get("tokens")
    if isinstance(tokens, Mapping):
        if data.get("auth_mode") not in (None, "chatgpt", "chatgptAuthTokens"):
            raise CodexLoginError(f"auth.json is in '{data.get('auth_mode')}' mode, not ChatGPT sign-in")
        return {**tokens, "last_refresh": data.get("last_refresh")}
    if data.get("access_token") or data.get("refresh_token"):
        return data
    for container in (data.get("credentials"), data.get("accounts"), (data.get("data") or {}).get("accounts")):
        if isinstance(container, list):
            for entry in container:
                if (
                    isinstance(entry, Mapping)
                    and entry.get("platform", "openai") == "openai"
                    and (entry.get("type", "oauth") in ("oauth", "codex"))
                ):
                    nested = entry.get("credentials")
                    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else entry
                    if inner.get("refresh_token"):
                        return inner
    raise CodexLoginError("no ChatGPT tokens found (expected auth.json `tokens`, a flat token file or a bundle)")


def codex_import_auth_json(
    *,
    data: Mapping[str, Any],
    label: str,
    base_url: str = DEFAULT_BASE_URL,
    model_names: Iterable[str] = DEFAULT_MODELS,
    provider_config: Mapping[str, Any] | None = None,
    pin_account_id: str | None = None,
    actor: Any | None = None,
    allow_duplicate: bool = False,
) -> UpstreamAccount:
    """Import a Codex CLI auth.json (or compatible export).

    The CLI that wrote it must stop using it: whichever side refreshes first kills the other.
    """
    block = _token_block(data)
    access, refresh = block.get("access_token"), block.get("refresh_token")
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
        raise CodexLoginError("the file has no access_token/refresh_token")
    id_token = block.get("id_token")
    secret = codex_secret_build(
        access_token=access,
        refresh_token=refresh,
        id_token=id_token if isinstance(id_token, str) else None,
        last_refresh=_epoch(block.get("last_refresh")),
        expires_at=_epoch(block.get("expired") or block.get("expires_at")),
        pin_account_id=pin_account_id or (str(block["account_id"]) if block.get("account_id") else None),
    )
    return codex_account_save(
        label=label,
        secret=secret,
        base_url=base_url,
        model_names=model_names,
        provider_config=provider_config,
        actor=actor,
        allow_duplicate=allow_duplicate,
    )


# ----------------------------------------------------------------------------- refresh


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    secret: dict[str, Any]
    refreshed: bool  # this call rotated the token upstream
    reason: str  # "fresh" | "refreshed" | "sibling"


def _secret_of(cred: Credential) -> dict[str, Any]:
    # EncryptedJSONField decrypts to a dict; django-stubs only knows it as a TextField.
    value: Any = cred.secret
    return dict(value)


def _load(account_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    cred = Credential.objects.select_related("account").get(account_id=account_id)
    return _secret_of(cred), dict(cred.account.provider_config or {})


def _needs_refresh(secret: Mapping[str, Any], *, stale_access_token: str | None, min_valid: float, now: float) -> bool:
    if stale_access_token is not None and secret.get("access_token") == stale_access_token:
        return True  # exactly the token the upstream just rejected
    expires = secret.get("expires_at")
    if isinstance(expires, int | float):
        return expires - now < min_valid
    last = secret.get("last_refresh")
    return not isinstance(last, int | float) or now - last > _STALE_AFTER_SECONDS


def _persist(account_id: int, *, sent_refresh_token: str, tokens: oauth.TokenSet) -> dict[str, Any]:
    """Store what the refresh returned, all fields in one transaction under the row lock."""
    with transaction.atomic():
        cred = Credential.objects.select_for_update().get(account_id=account_id)
        secret = _secret_of(cred)
        if secret.get("refresh_token") != sent_refresh_token:
            # Only possible when a holder outlived its store lock; our rotation is the newest
            # one the auth server issued, so it still wins — but say so.
            log.warning(
                "codex account %s: refresh token changed while refreshing; keeping the newer result", account_id
            )
        for name in ("access_token", "refresh_token", "id_token"):
            value = getattr(tokens, name)
            if value:
                secret[name] = value
        now = time.time()
        claims = claims_or_none(secret.get("access_token"))
        secret["last_refresh"] = now
        secret["expires_at"] = (claims.expires_at if claims else None) or (
            now + tokens.expires_in if tokens.expires_in else None
        )
        if claims and claims.plan_type:
            secret["plan_type"] = claims.plan_type
        cred.secret = secret  # type: ignore[assignment]  # EncryptedJSONField holds a dict
        cred.expires_at = _as_datetime(secret["expires_at"])
        cred.save(update_fields=["secret", "expires_at", "updated_at"])
        transaction.on_commit(cache_version_bump)
    return secret


def _mark_failed(account_id: int, message: str) -> None:
    with transaction.atomic():
        UpstreamAccount.objects.filter(id=account_id).update(
            state=AccountState.AUTH_FAILED, last_error=message[:2000], last_error_at=timezone.now()
        )
        transaction.on_commit(cache_version_bump)


async def _acquire(store: StateStore, key: str, wait: float) -> Any:
    """Wait for the (non-blocking) store lock; a waiter re-checks freshness once inside."""
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        cm = store.lock(key, ttl=_LOCK_TTL_SECONDS)
        try:
            await cm.__aenter__()
            return cm
        except LockNotAcquired:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(0.25, delay * 2)


@counts_refresh("codex")
async def codex_token_refresh(
    *,
    store: StateStore,
    account_id: int,
    stale_access_token: str | None = None,
    min_valid_seconds: float | None = None,
    force: bool = False,
    wait_seconds: float = 20.0,
) -> RefreshOutcome:
    """Make the account's access token fresh; at most one upstream refresh per account at a time.

    Refreshes when `force`, when the stored access token is `stale_access_token` (the one an
    upstream just rejected), or when it expires within `min_valid_seconds` (default: the
    account's inline_refresh_seconds). Raises CodexRefreshError (terminal → auth_failed).
    """
    try:
        cm = await _acquire(store, f"codex:refresh:{account_id}", wait_seconds)
    except LockNotAcquired:
        raise CodexRefreshError("another process is still refreshing this account", terminal=False) from None
    try:
        secret, provider_config = await db_call(_load, account_id)
        cfg: CodexConfig = codex_config(provider_config)
        min_valid = cfg.inline_refresh_seconds if min_valid_seconds is None else min_valid_seconds
        if not force and not _needs_refresh(
            secret, stale_access_token=stale_access_token, min_valid=min_valid, now=time.time()
        ):
            # A sibling refreshed while we queued for the lock (docs/protocols/codex.md#token-refresh step 4).
            changed = stale_access_token is not None and secret.get("access_token") != stale_access_token
            return RefreshOutcome(secret, refreshed=False, reason="sibling" if changed else "fresh")
        sent = str(secret.get("refresh_token") or "")
        if not sent:
            await db_call(_mark_failed, account_id, "no refresh token stored")
            raise CodexRefreshError("no refresh token stored", terminal=True)
        try:
            tokens = await oauth.refresh_tokens(cfg, refresh_token=sent)
        except oauth.OAuthError as exc:
            if exc.code in oauth.ROTATED_ELSEWHERE_CODES:
                current, _ = await db_call(_load, account_id)
                if current.get("refresh_token") != sent:
                    # docs/protocols/codex.md#token-refresh step 3: a sibling won the race; its tokens are already
                    # stored.
                    return RefreshOutcome(current, refreshed=False, reason="sibling")
            if exc.terminal:
                await db_call(_mark_failed, account_id, f"refresh failed: {exc.code or exc}")
                raise CodexRefreshError(f"refresh rejected: {exc}", terminal=True, code=exc.code) from None
            raise CodexRefreshError(f"refresh failed: {exc}", terminal=False, code=exc.code) from None
        except httpx.HTTPError as exc:
            raise CodexRefreshError(f"auth server unreachable: {type(exc).__name__}", terminal=False) from None
        if not tokens.access_token:
            raise CodexRefreshError("refresh returned no access token", terminal=False)
        # Persist BEFORE anyone uses the new access token: the old refresh token is dead now.
        new_secret = await db_call(_persist, account_id, sent_refresh_token=sent, tokens=tokens)
        return RefreshOutcome(new_secret, refreshed=True, reason="refreshed")
    finally:
        await cm.__aexit__(None, None, None)


def codex_token_refresh_sync(*, account_id: int, **kwargs: Any) -> RefreshOutcome:
    """For Celery and commands (a private store client, closed afterwards)."""

    async def run(store: StateStore) -> RefreshOutcome:
        return await codex_token_refresh(store=store, account_id=account_id, **kwargs)

    return call_sync(run)


def codex_accounts_refresh_due(*, now: float | None = None) -> dict[int, str]:
    """Refresh-ahead for every active Codex account close to expiry (Celery beat calls this)."""
    now = time.time() if now is None else now
    results: dict[int, str] = {}
    rows = Credential.objects.select_related("account").filter(
        account__provider=KIND, account__enabled=True, account__state=AccountState.ACTIVE
    )
    for cred in rows:
        cfg = codex_config(cred.account.provider_config)
        if not _needs_refresh(_secret_of(cred), stale_access_token=None, min_valid=cfg.refresh_ahead_seconds, now=now):
            continue
        try:
            outcome = codex_token_refresh_sync(account_id=cred.account_id, min_valid_seconds=cfg.refresh_ahead_seconds)
            results[cred.account_id] = outcome.reason
        except CodexRefreshError as exc:
            log.warning("codex refresh-ahead failed for account %s: %s", cred.account.label, exc)
            results[cred.account_id] = "failed"
    return results
