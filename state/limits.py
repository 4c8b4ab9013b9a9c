"""Per-key limits: requests per minute, tokens per UTC day, token and money budgets per period.

Reserve, then settle. Before a request goes upstream, `limits_reserve` atomically charges one
request and what the request can use *at most* (tokens: its body's bytes plus its output cap;
money: that at the model's price) to every counter that applies to the key (one Lua script
in Redis, one mutex in the in-process store). A request is admitted while every counter is
below its limit — even when its own maximum is larger than the room left: an estimate never
refuses a request while real headroom remains (a key with 200 tokens a day gets its first
request although it could in theory produce 32k tokens). When the answer is complete,
`limits_settle` replaces each charge with the real use.

Why at most one request's overshoot, however many run at once: a request is admitted only
while the counter (real use of settled requests + the maximum of every request in flight,
each at least its real use) is below the limit. So everything admitted before the last
admitted request used less than the limit, and only that last request can end above it.

Charges of requests still in flight are also kept in a "held" counter. A counter that is
full only because of held charges is *busy*, not spent: the refusal then says so and asks
for a retry in a couple of seconds instead of at the end of the period.

Windows: requests per minute is a fixed 60 s window started by the first request; token and
money windows are UTC calendar periods (day, ISO week, month) so every process agrees on the
boundaries. A key's counters carry its id in a hash tag, a team's counters the team's id.
Money is counted in nano-USD (pricing.cost). Team money budgets are shared by every key of
the team: one counter per team and period.

Store down: **fail open** by default (settings.PROXY_LIMITS_FAIL_CLOSED = False). Limits
protect budgets, not the service; refusing every request because Redis blipped would be a
total outage for a bounded, logged, after-the-fact overspend. The reservation is marked
`degraded` and its settlement is a no-op. Set PROXY_LIMITS_FAIL_CLOSED = True to refuse
limited keys instead (they get LimitExceeded(which="unavailable")); unlimited keys never touch
the store and are unaffected either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from django.conf import settings

from statestore import CounterLimit, StateStore, held_key

log = logging.getLogger(__name__)


class KeyLimits(Protocol):
    """What the limits read of a developer key (accounts.selectors.KeyInfo has these)."""

    @property
    def id(self) -> int: ...
    @property
    def requests_per_minute(self) -> int | None: ...
    @property
    def tokens_per_day(self) -> int | None: ...
    @property
    def budgets(self) -> tuple[tuple[int, str], ...]: ...  # (tokens, period)


LimitName = Literal[
    "requests_per_minute", "tokens_per_day", "budget", "money_budget", "team_money_budget", "unavailable"
]
_Kind = Literal["requests", "tokens", "money"]

_MINUTE = 60.0
# Retry-After when a limit is full only of in-flight reservations: they settle within a request.
BUSY_RETRY_SECONDS = 2.0
# Output assumed for the reservation when the request sets no cap; reservations larger than
# the room left are clamped to it, so this only bounds how far one request can overshoot.
DEFAULT_MAX_OUTPUT_TOKENS = 32_768


class LimitExceeded(Exception):
    """The key is over one of its limits; retry_after is seconds until the window resets.

    busy: the limit is full only of reservations of requests still in flight (retry soon).
    """

    def __init__(self, *, retry_after: float, which: LimitName, busy: bool = False) -> None:
        super().__init__(f"limit {which} reached; retry after {retry_after:.0f}s")
        self.retry_after = retry_after
        self.which = which
        self.busy = busy


@dataclass(frozen=True, slots=True)
class MoneyLimit:
    """A money budget that applies to a request (pricing.selectors.money_limits)."""

    scope: Literal["key", "team"]
    scope_id: int
    nano: int  # nano-USD allowed per period
    period: str  # "day" | "week" | "month"


@dataclass(frozen=True, slots=True)
class Reservation:
    key_id: int
    estimated_tokens: int
    # (counter, kind, amount charged) for every token and money counter, settled later with
    # the real use; request counters are final and not listed.
    charges: tuple[tuple[str, _Kind, int], ...] = ()
    degraded: bool = False  # store unavailable and failing open: nothing to settle

    @property
    def token_counters(self) -> tuple[str, ...]:
        return tuple(k for k, kind, _ in self.charges if kind == "tokens")

    @property
    def money(self) -> bool:
        """A money budget applies: settle needs the request's real cost."""
        return any(kind == "money" for _, kind, _ in self.charges)


def period_start(now: datetime, period: str) -> datetime:
    """Start of the UTC calendar period (day, ISO week, month) that holds `now`."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _period_end(now: datetime, period: str) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day + timedelta(days=1)
    if period == "week":
        return day + timedelta(days=7 - day.weekday())
    # month
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _period_id(now: datetime, period: str) -> str:
    if period == "day":
        return now.strftime("%Y%m%d")
    if period == "week":
        year, week, _ = now.isocalendar()
        return f"{year}W{week:02d}"
    return now.strftime("%Y%m")


def _window(name: str, amount: int, limit: int, now: datetime, period: str) -> tuple[CounterLimit, float]:
    left = (_period_end(now, period) - now).total_seconds()
    # TTL a little past the period end: the id in the name is what separates windows.
    return CounterLimit(f"{name}:{_period_id(now, period)}", amount, limit, left + 3600, hold=True), left


def _counters(
    key: KeyLimits, tokens: int, cost_nano: int, money: Sequence[MoneyLimit], now: datetime
) -> list[tuple[LimitName, _Kind, CounterLimit, float]]:
    """(limit name, kind, counter, seconds until its window ends) for every limit that applies."""
    tag = f"lim:{{{key.id}}}"
    out: list[tuple[LimitName, _Kind, CounterLimit, float]] = []
    if key.requests_per_minute is not None:
        rpm = CounterLimit(f"{tag}:rpm", 1, key.requests_per_minute, _MINUTE)
        out.append(("requests_per_minute", "requests", rpm, _MINUTE))
    if key.tokens_per_day is not None:
        out.append(("tokens_per_day", "tokens", *_window(f"{tag}:tpd", tokens, key.tokens_per_day, now, "day")))
    for limit, period in key.budgets:  # the key's own and its team's (one per period)
        out.append(("budget", "tokens", *_window(f"{tag}:bud:{period}", tokens, limit, now, period)))
    for m in money:
        if m.scope == "team":
            name = f"lim:{{t{m.scope_id}}}:usd:{m.period}"
            out.append(("team_money_budget", "money", *_window(name, cost_nano, m.nano, now, m.period)))
        else:
            out.append(("money_budget", "money", *_window(f"{tag}:usd:{m.period}", cost_nano, m.nano, now, m.period)))
    return out


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """How much of one limit the current window has used (settled use; what requests still
    in flight hold is in `held`)."""

    which: LimitName
    period: str  # "minute", "day", "week", "month"
    used: int
    limit: int
    resets_in: float  # seconds until the window ends
    held: int = 0  # charged to requests still in flight (their most), settled when they end


async def limits_usage(
    store: StateStore, *, key: KeyLimits, money: Sequence[MoneyLimit] = (), now: datetime | None = None
) -> list[LimitUsage]:
    """The key's counters as enforcement sees them, one read (for the admin and the developer page)."""
    now = now or datetime.now(UTC)
    counters = _counters(key, 0, 0, money, now)
    if not counters:
        return []
    # _counters lists requests/minute, tokens/day, the token budgets, then the money budgets.
    periods = ["minute"] * (key.requests_per_minute is not None) + ["day"] * (key.tokens_per_day is not None)
    periods += [period for _, period in key.budgets] + [m.period for m in money]
    names = [c.key for _, _, c, _ in counters]
    values = await store.get_many(names + [held_key(n) for n in names])
    out = []
    for i, ((which, _, counter, window_left), period) in enumerate(zip(counters, periods, strict=True)):
        raw, held_raw = values[i], values[len(names) + i]
        held = int(held_raw) if held_raw else 0
        used = (int(raw) if raw else 0) - held
        if which == "requests_per_minute":
            window_left = (await store.ttl(counter.key) or 0.0) if raw else _MINUTE
        out.append(LimitUsage(which, period, max(0, used), counter.limit, window_left, max(0, held)))
    return out


def key_has_limits(key: KeyLimits, money: Sequence[MoneyLimit] = ()) -> bool:
    return key.requests_per_minute is not None or key.tokens_per_day is not None or bool(key.budgets) or bool(money)


async def limits_reserve(
    store: StateStore,
    *,
    key: KeyLimits,
    estimated_tokens: int,
    estimated_cost_nano: int = 0,
    money: Sequence[MoneyLimit] = (),
    now: datetime | None = None,
) -> Reservation:
    """Charge one request and up to its estimate to every limit of `key` (and the money
    budgets of the key and its team), or raise LimitExceeded."""
    estimated_tokens = max(0, int(estimated_tokens))
    if not key_has_limits(key, money):
        return Reservation(key_id=key.id, estimated_tokens=estimated_tokens)
    now = now or datetime.now(UTC)
    counters = _counters(key, estimated_tokens, max(0, int(estimated_cost_nano)), money, now)
    try:
        result = await store.counters_reserve([c for _, _, c, _ in counters])
        if result.over is not None:
            which, _, counter, window_left = counters[result.over]
            if result.busy:
                raise LimitExceeded(retry_after=BUSY_RETRY_SECONDS, which=which, busy=True)
            remaining = await store.ttl(counter.key) if which == "requests_per_minute" else None
            raise LimitExceeded(retry_after=max(1.0, remaining if remaining is not None else window_left), which=which)
    except LimitExceeded:
        raise
    except Exception:
        if getattr(settings, "PROXY_LIMITS_FAIL_CLOSED", False):
            log.exception("limits store unavailable: refusing key %s (fail closed)", key.id)
            raise LimitExceeded(retry_after=5.0, which="unavailable") from None
        log.exception("limits store unavailable: allowing key %s unmetered (fail open)", key.id)
        return Reservation(key_id=key.id, estimated_tokens=estimated_tokens, degraded=True)
    charges = tuple((c.key, kind, c.amount) for _, kind, c, _ in counters if kind != "requests")
    return Reservation(key_id=key.id, estimated_tokens=estimated_tokens, charges=charges)


async def limits_settle(
    store: StateStore, reservation: Reservation, *, actual_tokens: int, actual_cost_nano: int | None = 0
) -> None:
    """Apply `limits_settlement` to the store.

    Never raises: the client already has its answer; a failed settlement only leaves the
    charge in place (logged).
    """
    deltas = limits_settlement(reservation, actual_tokens=actual_tokens, actual_cost_nano=actual_cost_nano)
    if not deltas:
        return
    try:
        await store.counters_adjust(deltas)
    except Exception:
        log.exception("could not settle limits for key %s", reservation.key_id)


def limits_settlement(
    reservation: Reservation, *, actual_tokens: int, actual_cost_nano: int | None = 0
) -> list[tuple[str, int]]:
    """The counter changes that settle a reservation: each charge replaced with what the
    request really used (tokens; cost in nano-USD) and the held part released.
    actual_cost_nano=None (the cost could not be found out) keeps the money charges as they
    are: the conservative side of a budget. For `counters_adjust` (or, on the request path,
    applied in the same round trip as the usage record)."""
    if reservation.degraded or not reservation.charges:
        return []
    deltas: list[tuple[str, int]] = []
    for counter, kind, charged in reservation.charges:
        if kind == "money":
            actual = charged if actual_cost_nano is None else max(0, int(actual_cost_nano))
        else:
            actual = max(0, int(actual_tokens))
        if actual != charged:
            deltas.append((counter, actual - charged))
        if charged:
            deltas.append((held_key(counter), -charged))
    return deltas


def estimate_tokens(raw_body_len: int, body: dict[str, object]) -> int:
    """The most tokens a request can use, cheaply: its prompt cannot hold more tokens than its
    body has bytes, plus the requested output cap (DEFAULT_MAX_OUTPUT_TOKENS when none).
    Generous on purpose: a reservation larger than the room left is clamped to it, and
    settlement corrects it."""
    return raw_body_len + max_output_tokens(body)


def max_output_tokens(body: dict[str, object]) -> int:
    cap = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens")
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
        return min(cap, 100_000_000)  # no model writes more; keeps a hostile value a plain number
    return DEFAULT_MAX_OUTPUT_TOKENS
