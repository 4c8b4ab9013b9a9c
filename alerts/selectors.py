"""What alerts watch: the current state of every account, budget and quota window.

Each `Condition` names a subject and its state now; alerts.services compares it with the
state it last saw and alerts on a change. Nothing here names a provider: account health
comes from accounts.health, quota windows from the generic readings in the state store
(state/quota.py), which the providers that meter usage in windows write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from accounts.health import HealthStatus, accounts_health
from accounts.models import UpstreamAccount
from pricing.cost import usd_format
from pricing.selectors import BudgetStatus, budget_statuses
from state.quota import QuotaSnapshot, quota_snapshots
from statestore import StateStore, StoreUnavailable
from statestore.factory import call_sync

QUOTA_LOW_HEADROOM = 0.10  # alert when a window has less than 10 % left
BUDGET_WARN_PERCENT = 80.0
ALARMING_HEALTH = {HealthStatus.FAILING, HealthStatus.NEEDS_HUMAN}


@dataclass(frozen=True, slots=True)
class Condition:
    subject: str  # stable name, e.g. "account:3"
    kind: str  # "account" | "budget" | "quota"
    state: str
    alarming: bool  # this state is worth telling someone about
    text: str  # what it means, for a person
    # Going back to normal is not announced (a budget period that starts again).
    quiet_recovery: bool = False


def account_conditions(now: datetime | None = None) -> list[Condition]:
    health = accounts_health(now=now)
    labels = dict(UpstreamAccount.objects.values_list("id", "label"))
    out = []
    for account_id, h in health.items():
        label = labels.get(account_id, f"#{account_id}")
        detail = h.needs_human or h.last_error
        text = f"Account {label} is {h.status.label.lower()}" + (f": {detail}" if detail else "")
        if h.status in ALARMING_HEALTH and h.consecutive_failures:
            text += f" ({h.consecutive_failures} failed attempts in a row)"
        out.append(Condition(f"account:{account_id}", "account", h.status.value, h.status in ALARMING_HEALTH, text))
    return out


def _budget_level(status: BudgetStatus) -> str:
    if status.percent >= 100:
        return "exceeded"
    return "warn" if status.percent >= BUDGET_WARN_PERCENT else "ok"


def budget_conditions(now: datetime | None = None) -> list[Condition]:
    out = []
    for s in budget_statuses(now):
        level = _budget_level(s)
        if s.kind == "money":
            amounts = f"{usd_format(s.used)} of {usd_format(s.limit)}"
        else:
            amounts = f"{s.used:,} of {s.limit:,} tokens"
        verb = {"exceeded": "has used all of", "warn": "passed 80 % of", "ok": "is within"}[level]
        text = f"{s.label} {verb} its {s.period}ly {s.kind} budget: {amounts} ({s.percent:.0f} %)"
        out.append(Condition(f"budget:{s.ident}", "budget", level, level != "ok", text, quiet_recovery=True))
    return out


def quota_conditions() -> list[Condition]:
    """Quota windows read from the shared store (with the embedded in-process store another
    process cannot see them: no quota alerts then, see docs/admin.md)."""
    accounts = dict(UpstreamAccount.objects.filter(enabled=True).values_list("id", "label"))

    async def read(store: StateStore) -> dict[int, list[QuotaSnapshot]]:
        return {pk: await quota_snapshots(store, account_id=pk) for pk in accounts}

    try:
        readings = call_sync(read)
    except StoreUnavailable:
        return []
    out = []
    for account_id, snaps in readings.items():
        for snap in snaps:
            low = snap.headroom < QUOTA_LOW_HEADROOM
            resets = (
                f", resets {datetime.fromtimestamp(snap.resets_at, UTC):%Y-%m-%d %H:%M} UTC" if snap.resets_at else ""
            )
            text = (
                f"Account {accounts[account_id]}: quota window {snap.family}/{snap.window} is "
                f"{snap.used_percent:.0f} % used ({snap.headroom * 100:.0f} % left{resets})"
            )
            subject = f"quota:{account_id}:{snap.family}:{snap.window}"
            out.append(Condition(subject, "quota", "low" if low else "ok", low, text))
    return out


def conditions_current(now: datetime | None = None) -> list[Condition]:
    return [*account_conditions(now), *budget_conditions(now), *quota_conditions()]
