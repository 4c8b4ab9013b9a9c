"""Services behind the accounts board's buttons: test now, refresh now, clear cooldowns,
and the live state (cooldowns, quota) the board shows.

Cooldowns and quota belong to routing; they are read only through state.cooldown and
state.quota. The imports are guarded so the board still renders ("n/a") if a deployment
lacks them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from accounts.models import CredentialKind, ProviderKind, UpstreamAccount
from accounts.selectors import account_info_from_row
from accounts.services import account_update
from audit.services import admin_action_log
from statestore import StateStore
from statestore.factory import call_sync

log = logging.getLogger(__name__)

try:
    from state.cooldown import cooldowns_clear, cooldowns_list
except ImportError:  # pragma: no cover - owned by another module
    cooldowns_list = None  # type: ignore[assignment]
    cooldowns_clear = None  # type: ignore[assignment]
try:
    from state.quota import quota_snapshots
except ImportError:  # pragma: no cover
    quota_snapshots = None  # type: ignore[assignment]


@dataclass(slots=True)
class LiveState:
    cooldowns: list[Any] | None = None  # None = not available ("n/a")
    quota: list[Any] | None = None
    error: str = ""


@dataclass(slots=True)
class ProbeResult:
    ok: bool
    message: str
    upstream_text: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def accounts_live_state(account_ids: list[int]) -> dict[int, LiveState]:
    """Cooldowns and quota snapshots of many accounts, in one store session."""

    async def read(store: StateStore) -> dict[int, LiveState]:
        out: dict[int, LiveState] = {}
        for account_id in account_ids:
            state = LiveState()
            try:
                if cooldowns_list is not None:
                    state.cooldowns = list(await cooldowns_list(store, account_id=account_id))
                if quota_snapshots is not None:
                    state.quota = list(await quota_snapshots(store, account_id=account_id))
            except Exception as exc:  # the board must render even if the store is down
                state.error = f"state store unavailable: {exc}"
            out[account_id] = state
        return out

    try:
        return call_sync(read)
    except Exception as exc:
        return {a: LiveState(error=f"state store unavailable: {exc}") for a in account_ids}


def account_test(*, account: UpstreamAccount, actor: Any = None) -> ProbeResult:
    """Send a 1-token chat request through the account's executor and report what happened.

    Costs a few tokens; records the upstream's text as last_error on failure (cleared on
    success) and the attempt in the action log.
    """
    from executors.base import UpstreamCall, UpstreamError
    from executors.http import http_clients_close
    from executors.registry import executor_for
    from formats import Dialect

    executor = executor_for(account.provider)
    if executor is None:
        return ProbeResult(False, f"No executor for provider {account.provider!r} yet.")
    if not account.model_names:
        return ProbeResult(False, "The account serves no models; add one first.")
    model = sorted(account.model_names)[0]
    call = UpstreamCall(
        account=account_info_from_row(account),
        dialect=Dialect.CHAT,
        body={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        stream=False,
        upstream_model=model,
    )

    async def probe(_store: StateStore) -> ProbeResult:
        try:
            response = await executor.open(call)
            await response.aclose()
            return ProbeResult(True, f"{model} answered (request id {response.request_id or 'n/a'}).")
        except UpstreamError as exc:
            return ProbeResult(False, f"{model}: HTTP {exc.status} {exc.code}", upstream_text=exc.message)
        except Exception as exc:
            return ProbeResult(False, f"{model}: {type(exc).__name__}", upstream_text=str(exc))
        finally:
            # The pooled client belongs to this short-lived loop; close it with the loop.
            await http_clients_close()

    result = call_sync(probe)
    account_update(account=account, last_error="" if result.ok else f"{result.message}: {result.upstream_text}"[:2000])
    admin_action_log(
        actor=actor,
        action="account.test",
        target_type="account",
        target_id=account.pk,
        target_label=account.label,
        changes={"result": [None, "ok" if result.ok else result.message]},
    )
    return result


def account_refresh(*, account: UpstreamAccount, actor: Any = None) -> ProbeResult:
    """Ask the executor to refresh the account's credential now (OAuth kinds; a no-op for keys)."""
    from executors.http import http_clients_close
    from executors.registry import executor_for

    executor = executor_for(account.provider)
    if executor is None:
        return ProbeResult(False, f"No executor for provider {account.provider!r} yet.")
    pair = _gitlab_oauth_pair_refresh(account)
    codex = _codex_refresh(account)
    if codex is not None:
        result = codex
    elif pair is not None and not pair.ok:
        result = pair
    else:

        async def refresh(_store: StateStore) -> ProbeResult:
            try:
                changed = await executor.refresh_credential(account_info_from_row(account))
            except Exception as exc:
                # UpstreamError carries the provider's specific message; say it, not the class.
                text = getattr(exc, "message", "") or str(exc)
                return ProbeResult(False, f"refresh failed: {text}", upstream_text=str(exc))
            finally:
                await http_clients_close()
            return ProbeResult(True, "credential refreshed" if changed else "nothing to refresh for this credential")

        result = call_sync(refresh)
        if result.ok and result.message == "credential refreshed" and account.provider == ProviderKind.GITLAB:
            # Say what was refreshed: for GitLab the executor's "credential" is the gateway token.
            cred = getattr(account, "credential", None)
            result.message = (
                "OAuth token pair refreshed; gateway token re-minted"
                if pair is not None
                else "gateway token re-minted (a personal access token itself cannot be refreshed)"
                if cred is not None and cred.kind == CredentialKind.PAT
                else "gateway token re-minted"
            )
    admin_action_log(
        actor=actor,
        action="account.refresh",
        target_type="account",
        target_id=account.pk,
        target_label=account.label,
        changes={"result": [None, result.message]},
    )
    return result


def _gitlab_oauth_pair_refresh(account: UpstreamAccount) -> ProbeResult | None:
    """GitLab OAuth accounts: rotate the OAuth pair now. The executor's refresh re-mints only the
    gateway token (touching the pair only near its expiry), but "refresh credential now" on an
    OAuth account should prove the refresh token still works. None = not a GitLab OAuth account."""
    cred = getattr(account, "credential", None)
    if account.provider != ProviderKind.GITLAB or cred is None or cred.kind != CredentialKind.OAUTH:
        return None
    from executors.gitlab.exceptions import GitLabError
    from executors.gitlab.services import gitlab_credential_refresh

    try:
        gitlab_credential_refresh(account_id=account.pk)
    except GitLabError as exc:
        return ProbeResult(False, f"OAuth refresh failed: {exc.message}", upstream_text=exc.upstream_text)
    return ProbeResult(True, "OAuth token pair refreshed")


def _codex_refresh(account: UpstreamAccount) -> ProbeResult | None:
    """Codex accounts: rotate the ChatGPT tokens now (force). The executor's refresh only
    rotates a token it believes stale, and "refresh credential now" should prove the refresh
    token still works. Same single-flight service as Celery and the request path, so it cannot
    race them. None = not a Codex account."""
    if account.provider != ProviderKind.CODEX:
        return None
    from executors.codex.services import CodexRefreshError, codex_token_refresh_sync

    try:
        outcome = codex_token_refresh_sync(account_id=account.pk, force=True)
    except CodexRefreshError as exc:
        # Terminal: the service already marked the account auth_failed; say what to do.
        hint = " — sign in again (Add account → OpenAI Codex)" if exc.terminal else ""
        return ProbeResult(False, f"refresh failed: {exc}{hint}", upstream_text=exc.code)
    expires = outcome.secret.get("expires_at")
    until = (
        datetime.fromtimestamp(expires, tz=UTC).strftime(" (access token valid until %Y-%m-%d %H:%M UTC)")
        if isinstance(expires, int | float)
        else ""
    )
    return ProbeResult(True, f"ChatGPT tokens refreshed{until}")


def account_cooldowns_clear(*, account: UpstreamAccount, actor: Any = None) -> int | None:
    """Clear every cooldown of the account; None when cooldowns are not available."""
    if cooldowns_clear is None:
        return None
    cleared = call_sync(lambda store: cooldowns_clear(store, account_id=account.pk))
    admin_action_log(
        actor=actor,
        action="account.cooldowns_clear",
        target_type="account",
        target_id=account.pk,
        target_label=account.label,
        changes={"cooldowns": [cleared, 0]},
    )
    return cleared
