"""Account health from what actually happened: the recent attempts in the usage records.

An account's state column only changes for problems that need a human (a revoked credential,
no entitlement). Everything else — a host that refuses connections, 5xx, 429s — shows up only
as failed attempts in the usage records (`UsageRecord.attempt_log` lists every account a
request tried, including the ones it failed over from) and as live cooldowns in the state
store. This module reads both and says, per account, how it is really doing.

`accounts_health()` is the selector: the accounts board, `account_list` and alerts read it.
Cost: one indexed range read of the newest usage records (at most HEALTH_MAX_RECORDS, within
HEALTH_WINDOW), one read of the accounts table, a per-account indexed lookup of the last
success only for accounts with none in the window, and one store session for cooldowns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.utils import timezone

from accounts.models import AccountState, UpstreamAccount
from audit.models import Outcome, UsageRecord

HEALTH_WINDOW = timedelta(hours=1)  # success rate and streaks come from this window
HEALTH_MAX_RECORDS = 5000  # newest records read per computation (bounds the cost at high traffic)
LAST_SUCCESS_LOOKBACK = timedelta(days=7)  # how far back "last success" is searched
FAILING_STREAK = 3  # consecutive failed attempts that make an account "failing"
MIN_ATTEMPTS_FOR_RATE = 5  # fewer attempts than this say nothing about a success rate
FAILING_RATE = 0.5
DEGRADED_RATE = 0.9


class HealthStatus(StrEnum):
    # In severity order: the board sorts by this, worst first.
    NEEDS_HUMAN = "needs_human"
    FAILING = "failing"
    COOLING = "cooling"
    DEGRADED = "degraded"
    IDLE = "idle"
    HEALTHY = "healthy"
    DISABLED = "disabled"

    @property
    def severity(self) -> int:
        return list(HealthStatus).index(self)

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    HealthStatus.NEEDS_HUMAN: "Needs a human",
    HealthStatus.FAILING: "Failing",
    HealthStatus.COOLING: "Cooling",
    HealthStatus.DEGRADED: "Degraded",
    HealthStatus.IDLE: "No recent traffic",
    HealthStatus.HEALTHY: "Healthy",
    HealthStatus.DISABLED: "Disabled",
}


@dataclass(frozen=True, slots=True)
class Cooling:
    scope: str  # "account", "family:<f>", "model:<m>"
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    at: datetime
    status: int | None
    code: str
    message: str  # the upstream's text when this attempt was the request's last one
    model: str

    def summary(self) -> str:
        head = " ".join(p for p in (f"HTTP {self.status}" if self.status else "", self.code) if p) or "error"
        return f"{head}: {self.message}" if self.message else head


@dataclass(frozen=True, slots=True)
class AccountHealth:
    account_id: int
    status: HealthStatus
    attempts: int  # in the window
    successes: int
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    consecutive_failures: int  # newest attempts that failed in a row
    cooling: tuple[Cooling, ...] = ()
    needs_human: str = ""  # the account state's label when it needs a human
    live_state_error: str = ""  # cooldowns could not be read (store down)
    recent_failures: tuple[FailedAttempt, ...] = field(default=())  # newest first, at most 10

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None

    @property
    def cooling_until(self) -> datetime | None:
        return max((c.until for c in self.cooling), default=None)


@dataclass(slots=True)
class _Tally:
    attempts: int = 0
    successes: int = 0
    streak: int = 0
    streak_open: bool = True  # still counting failures from the newest attempt
    last_success_at: datetime | None = None
    failures: list[FailedAttempt] = field(default_factory=list)

    def add(self, at: datetime, ok: bool, failure: FailedAttempt | None) -> None:
        # Called newest first.
        self.attempts += 1
        if ok:
            self.successes += 1
            self.streak_open = False
            if self.last_success_at is None:
                self.last_success_at = at
            return
        if self.streak_open:
            self.streak += 1
        if failure is not None and len(self.failures) < 10:
            self.failures.append(failure)


def _attempts_of(row: Mapping[str, Any]) -> Iterable[tuple[int | str, bool, FailedAttempt | None]]:
    """(account id or label, ok, failure) for each attempt of one record, newest first."""
    log = row["attempt_log"] if isinstance(row["attempt_log"], list) else []
    last = len(log) - 1
    for i in range(last, -1, -1):
        attempt = log[i] if isinstance(log[i], dict) else {}
        status = attempt.get("status")
        if status is None:
            continue  # cut short (client went away before an answer): says nothing
        ref = attempt.get("account_id") or attempt.get("account") or ""
        if i == last and row["account_id"]:
            ref = row["account_id"]
        # A 200 that broke mid-stream is the account's failure too.
        broke = i == last and row["outcome"] == Outcome.UPSTREAM_ERROR
        if status == 200 and not broke:
            yield ref, True, None
            continue
        yield (
            ref,
            False,
            FailedAttempt(
                at=row["created_at"],
                status=int(status) if isinstance(status, int) else None,
                code=str(attempt.get("code") or (row["error_code"] if i == last else "")),
                message=str(row["error_message"] or "") if i == last else "",
                model=str(attempt.get("model") or ""),
            ),
        )


def _tally(rows: Iterable[Mapping[str, Any]], ids_by_label: Mapping[str, int]) -> dict[int, _Tally]:
    tallies: dict[int, _Tally] = {}
    for row in rows:  # newest first
        for ref, ok, failure in _attempts_of(row):
            account_id = ref if isinstance(ref, int) else ids_by_label.get(str(ref))
            if account_id is None:
                continue  # an account deleted or renamed since
            tallies.setdefault(account_id, _Tally()).add(row["created_at"], ok, failure)
    return tallies


def _status(account: UpstreamAccount, tally: _Tally, cooling: Sequence[Cooling]) -> HealthStatus:
    if not account.enabled:
        return HealthStatus.DISABLED
    if account.state != AccountState.ACTIVE:
        return HealthStatus.NEEDS_HUMAN
    rate = tally.successes / tally.attempts if tally.attempts else None
    enough = tally.attempts >= MIN_ATTEMPTS_FOR_RATE
    if tally.streak >= FAILING_STREAK or (enough and rate is not None and rate < FAILING_RATE):
        return HealthStatus.FAILING
    if cooling:
        return HealthStatus.COOLING
    if tally.streak or (enough and rate is not None and rate < DEGRADED_RATE):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY if tally.attempts else HealthStatus.IDLE


def _last_success_before_window(account_ids: list[int], since: datetime, now: datetime) -> dict[int, datetime]:
    """Per account, its newest successful request older than the window (indexed per account)."""
    out: dict[int, datetime] = {}
    for account_id in account_ids:
        at = (
            UsageRecord.objects.filter(
                account_id=account_id, outcome=Outcome.OK, created_at__gte=now - LAST_SUCCESS_LOOKBACK
            )
            .filter(created_at__lt=since)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if at is not None:
            out[account_id] = at
    return out


def _cooling_of(live_states: Mapping[int, Any], now: datetime) -> tuple[dict[int, tuple[Cooling, ...]], dict[int, str]]:
    cooling: dict[int, tuple[Cooling, ...]] = {}
    errors: dict[int, str] = {}
    for account_id, live in live_states.items():
        if live.error:
            errors[account_id] = live.error
        cooling[account_id] = tuple(
            Cooling(scope=c.scope, until=now + timedelta(seconds=float(c.remaining)), reason=str(c.reason or ""))
            for c in (live.cooldowns or ())
        )
    return cooling, errors


def accounts_health(
    account_ids: Iterable[int] | None = None,
    *,
    now: datetime | None = None,
    live: bool = True,
    live_states: Mapping[int, Any] | None = None,
) -> dict[int, AccountHealth]:
    """Health of the given accounts (default: all), from recent usage and live cooldowns.

    `live_states` (accounts.flows.operations.accounts_live_state) saves a caller that already
    read the store a second read. live=False skips the store (cooldowns unknown): for a process
    that cannot see it (a command next to an embedded-store server).
    """
    now = now or timezone.now()
    accounts = UpstreamAccount.objects.all()
    if account_ids is not None:
        accounts = accounts.filter(pk__in=list(account_ids))
    by_id = {a.pk: a for a in accounts.only("id", "label", "enabled", "state", "last_error", "last_error_at")}
    since = now - HEALTH_WINDOW
    rows = (
        UsageRecord.objects.filter(created_at__gte=since, created_at__lte=now, attempts__gt=0)
        .order_by("-created_at", "-id")
        .values("created_at", "account_id", "outcome", "error_code", "error_message", "attempt_log")[
            :HEALTH_MAX_RECORDS
        ]
    )
    tallies = _tally(rows, {a.label: a.pk for a in by_id.values()})
    quiet = [pk for pk in by_id if tallies.get(pk, _Tally()).last_success_at is None]
    older_success = _last_success_before_window(quiet, since, now)
    if live and live_states is None:
        from accounts.flows.operations import accounts_live_state

        live_states = accounts_live_state(list(by_id))
    cooling, live_errors = _cooling_of(live_states or {}, now) if live else ({}, {})
    out: dict[int, AccountHealth] = {}
    for pk, account in by_id.items():
        tally = tallies.get(pk, _Tally())
        newest = tally.failures[0] if tally.failures else None
        last_error, last_error_at = (newest.summary(), newest.at) if newest else ("", None)
        # Probes ("test now") and needs-a-human errors are stored on the account: newer wins.
        stored_at = account.last_error_at
        if account.last_error and stored_at and (last_error_at is None or stored_at > last_error_at):
            last_error, last_error_at = account.last_error, stored_at
        account_cooling = cooling.get(pk, ())
        out[pk] = AccountHealth(
            account_id=pk,
            status=_status(account, tally, account_cooling),
            attempts=tally.attempts,
            successes=tally.successes,
            last_success_at=tally.last_success_at or older_success.get(pk),
            last_error=last_error,
            last_error_at=last_error_at,
            consecutive_failures=tally.streak,
            cooling=account_cooling,
            needs_human=account.get_state_display() if account.state != AccountState.ACTIVE else "",
            live_state_error=live_errors.get(pk, ""),
            recent_failures=tuple(tally.failures),
        )
    return out
