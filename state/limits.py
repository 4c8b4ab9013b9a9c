"""Per-key limits: requests per minute, tokens per UTC day, a token budget per period.

Reserve, then settle. Before a request goes upstream, `limits_reserve` atomically takes one
request and the *estimated* tokens from every counter that applies to the key (one Lua script
in Redis, one mutex in the in-process store): either all counters have room and all are
charged, or nothing changes and `LimitExceeded` says which limit and for how long. Concurrent
requests therefore cannot jointly overshoot: the sum of reservations never exceeds a limit.
When the answer is complete, `limits_settle` replaces the estimate with the real count; the
only possible overshoot is a request whose real usage exceeded its own estimate.

Windows: requests per minute is a fixed 60 s window started by the first request; token
windows are UTC calendar periods (day, ISO week, month) so every process agrees on the
boundaries. Counter keys carry the key id in a hash tag, so one key's counters live in one
Redis Cluster slot (a multi-key script requires that).

Store down: **fail open** by default (settings.PROXY_LIMITS_FAIL_CLOSED = False). Limits
protect budgets, not the service; refusing every request because Redis blipped would be a
total outage for a bounded, logged, after-the-fact overspend. The reservation is marked
`degraded` and its settlement is a no-op. Set PROXY_LIMITS_FAIL_CLOSED = True to refuse
limited keys instead (they get LimitExceeded(which="unavailable")); unlimited keys never touch
the store and are unaffected either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from django.conf import settings

from statestore import CounterLimit, StateStore

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


LimitName = Literal["requests_per_minute", "tokens_per_day", "budget", "unavailable"]

_MINUTE = 60.0


class LimitExceeded(Exception):
    """The key is over one of its limits; retry_after is seconds until the window resets."""

    def __init__(self, *, retry_after: float, which: LimitName) -> None:
        super().__init__(f"limit {which} reached; retry after {retry_after:.0f}s")
        self.retry_after = retry_after
        self.which = which


@dataclass(frozen=True, slots=True)
class Reservation:
    key_id: int
    estimated_tokens: int
    # Token counters charged with the estimate (settled later); request counters are final.
    token_counters: tuple[str, ...] = field(default_factory=tuple)
    degraded: bool = False  # store unavailable and failing open: nothing to settle


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


def _counters(key: KeyLimits, estimated_tokens: int, now: datetime) -> list[tuple[LimitName, CounterLimit, float]]:
    """(limit name, counter, seconds until its window ends) for every limit the key has."""
    tag = f"lim:{{{key.id}}}"
    out: list[tuple[LimitName, CounterLimit, float]] = []
    if key.requests_per_minute is not None:
        out.append(("requests_per_minute", CounterLimit(f"{tag}:rpm", 1, key.requests_per_minute, _MINUTE), _MINUTE))
    if key.tokens_per_day is not None:
        end = _period_end(now, "day")
        left = (end - now).total_seconds()
        out.append(
            (
                "tokens_per_day",
                # TTL a little past the period end: the id in the name is what separates windows.
                CounterLimit(f"{tag}:tpd:{_period_id(now, 'day')}", estimated_tokens, key.tokens_per_day, left + 3600),
                left,
            )
        )
    for tokens, period in key.budgets:  # the key's own and its team's (one per period)
        end = _period_end(now, period)
        left = (end - now).total_seconds()
        name = f"{tag}:bud:{period}:{_period_id(now, period)}"
        out.append(("budget", CounterLimit(name, estimated_tokens, tokens, left + 3600), left))
    return out


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """How much of one limit the current window has used (reservations in flight included)."""

    which: LimitName
    period: str  # "minute", "day", "week", "month"
    used: int
    limit: int
    resets_in: float  # seconds until the window ends


async def limits_usage(store: StateStore, *, key: KeyLimits, now: datetime | None = None) -> list[LimitUsage]:
    """The key's counters as enforcement sees them, one read (for the admin and the developer page)."""
    now = now or datetime.now(UTC)
    counters = _counters(key, 0, now)
    if not counters:
        return []
    # _counters lists requests/minute, tokens/day, then the budgets in order.
    periods = ["minute"] * (key.requests_per_minute is not None) + ["day"] * (key.tokens_per_day is not None)
    periods += [period for _, period in key.budgets]
    values = await store.get_many([c.key for _, c, _ in counters])
    out = []
    for (which, counter, window_left), period, raw in zip(counters, periods, values, strict=True):
        used = int(raw) if raw else 0
        if which == "requests_per_minute":
            window_left = (await store.ttl(counter.key) or 0.0) if raw else _MINUTE
        out.append(LimitUsage(which, period, max(0, used), counter.limit, window_left))
    return out


def key_has_limits(key: KeyLimits) -> bool:
    return key.requests_per_minute is not None or key.tokens_per_day is not None or bool(key.budgets)


async def limits_reserve(
    store: StateStore, *, key: KeyLimits, estimated_tokens: int, now: datetime | None = None
) -> Reservation:
    """Charge one request and `estimated_tokens` to every limit of `key`, or raise LimitExceeded."""
    estimated_tokens = max(0, int(estimated_tokens))
    if not key_has_limits(key):
        return Reservation(key_id=key.id, estimated_tokens=estimated_tokens)
    now = now or datetime.now(UTC)
    counters = _counters(key, estimated_tokens, now)
    try:
        over = await store.counters_reserve([c for _, c, _ in counters])
        if over is not None:
            which, counter, window_left = counters[over]
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
    return Reservation(
        key_id=key.id,
        estimated_tokens=estimated_tokens,
        token_counters=tuple(c.key for name, c, _ in counters if name != "requests_per_minute"),
    )


async def limits_settle(store: StateStore, reservation: Reservation, *, actual_tokens: int) -> None:
    """Replace the reservation's token estimate with what the request really used.

    Never raises: the client already has its answer; a failed settlement only leaves the
    estimate in place (logged).
    """
    if reservation.degraded or not reservation.token_counters:
        return
    delta = max(0, int(actual_tokens)) - reservation.estimated_tokens
    if delta == 0:
        return
    try:
        await store.counters_adjust([(k, delta) for k in reservation.token_counters])
    except Exception:
        log.exception("could not settle limits for key %s", reservation.key_id)


def estimate_tokens(raw_body_len: int, body: dict[str, object]) -> int:
    """A cheap upper-ish estimate for the reservation: ~4 bytes per prompt token plus the
    requested output cap (or 1024 when the client set none). Settlement corrects it."""
    cap = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens")
    out = cap if isinstance(cap, int) and cap > 0 else 1024
    return raw_body_len // 4 + min(out, 32_768)
