"""Services behind the accounts board's buttons: test now, refresh now, clear cooldowns,
and the live state (cooldowns, quota) the board shows.

"Test now" and "Refresh credential now" are the provider's (accounts.providers): this module
records what they report (last_error, action log) and never names a provider.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from accounts.models import UpstreamAccount
from accounts.providers import ProbeResult, provider_get
from accounts.services import account_update
from audit.services import admin_action_log
from state.cooldown import cooldowns_clear, cooldowns_list
from state.quota import quota_snapshots
from statestore import StateStore
from statestore.factory import call_sync

log = logging.getLogger(__name__)

__all__ = ["LiveState", "ProbeResult", "account_cooldowns_clear", "account_refresh", "account_test"]


@dataclass(slots=True)
class LiveState:
    cooldowns: list[Any] | None = None  # None = not available ("n/a")
    quota: list[Any] | None = None
    error: str = ""


def accounts_live_state(account_ids: list[int]) -> dict[int, LiveState]:
    """Cooldowns and quota snapshots of many accounts, in one store session."""

    async def read(store: StateStore) -> dict[int, LiveState]:
        out: dict[int, LiveState] = {}
        for account_id in account_ids:
            state = LiveState()
            try:
                state.cooldowns = list(await cooldowns_list(store, account_id=account_id))
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
    """Ask the account's provider for a 1-token request and report what happened.

    Costs a few tokens; records the upstream's text as last_error on failure (cleared on
    success) and the attempt in the action log.
    """
    provider = provider_get(account.provider)
    if provider is None or provider.probe is None:
        return ProbeResult(False, f"No executor for provider {account.provider!r} yet.")
    if not account.model_names:
        return ProbeResult(False, "The account serves no models; add one first.")
    result = provider.probe(account)
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
    """Ask the provider to refresh the account's credential now (OAuth kinds; a no-op for keys)."""
    provider = provider_get(account.provider)
    if provider is None or provider.refresh is None:
        return ProbeResult(False, f"No executor for provider {account.provider!r} yet.")
    result = provider.refresh(account)
    admin_action_log(
        actor=actor,
        action="account.refresh",
        target_type="account",
        target_id=account.pk,
        target_label=account.label,
        changes={"result": [None, result.message]},
    )
    return result


def account_cooldowns_clear(*, account: UpstreamAccount, actor: Any = None) -> int | None:
    """Clear every cooldown of the account."""
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
