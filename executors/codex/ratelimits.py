"""Codex rate-limit readings from response headers (docs/protocols/codex.md#rate-limit-signals) and
`codex.rate_limits` events (docs/protocols/codex.md#rate-limit-signals).

Header families are keyed by limit id: `x-codex-…` is the family "codex", `x-codex-bengalfox-…`
is "codex_bengalfox". The plain "codex" family carries whichever limit is active for this
request, which `x-codex-active-limit` names (e.g. "premium"): its readings are stored under
that name, which is also the cooldown key of a `usage_limit_reached`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from state.quota import quota_family_remember, quota_snapshot_set
from statestore import StateStore

_HEADER_RE = re.compile(
    r"^x-(?P<limit>[a-z0-9][a-z0-9-]*?)-(?P<window>primary|secondary)-"
    r"(?P<field>used-percent|window-minutes|reset-at|reset-after-seconds)$"
)


@dataclass(frozen=True, slots=True)
class WindowReading:
    family: str
    window: str
    used_percent: float
    window_minutes: int | None
    resets_at: float | None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result else None  # NaN


def _reset(at: Any, after: Any, now: float) -> float | None:
    """`reset-at` first (unix seconds, briefly RFC 3339), then `reset-after-seconds`; 0/blank = none."""
    if isinstance(at, str) and at.strip() and not _float(at):
        try:
            return datetime.fromisoformat(at.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    value = _float(at)
    if value:
        return value
    offset = _float(after)
    return now + offset if offset else None


def _reading(family: str, window: str, fields: Mapping[str, Any], now: float) -> WindowReading | None:
    used = _float(fields.get("used-percent", fields.get("used_percent")))
    if used is None:
        return None
    minutes = _float(fields.get("window-minutes", fields.get("window_minutes")))
    resets = _reset(
        fields.get("reset-at", fields.get("reset_at", fields.get("resets_at"))),
        fields.get("reset-after-seconds", fields.get("reset_after_seconds", fields.get("resets_in_seconds"))),
        now,
    )
    return WindowReading(family, window, used, int(minutes) if minutes else None, resets)


def active_limit(headers: Mapping[str, str]) -> str | None:
    value = headers.get("x-codex-active-limit", "").strip()
    return value or None


def readings_from_headers(headers: Mapping[str, str], *, now: float | None = None) -> list[WindowReading]:
    now = time.time() if now is None else now
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for name, value in headers.items():
        m = _HEADER_RE.match(name.lower())
        if m:
            groups.setdefault((m["limit"].replace("-", "_"), m["window"]), {})[m["field"]] = value
    active = active_limit(headers)
    out: list[WindowReading] = []
    for (limit, window), fields in sorted(groups.items()):
        family = active if limit == "codex" and active else limit
        reading = _reading(family, window, fields, now)
        if reading is not None:
            out.append(reading)
    return out


def event_family(event: Mapping[str, Any]) -> str:
    for key in ("metered_limit_name", "limit_name", "limit_id"):
        value = event.get(key)
        if isinstance(value, str) and value:
            return value
    return "codex"


def readings_from_event(event: Mapping[str, Any], *, now: float | None = None) -> list[WindowReading]:
    now = time.time() if now is None else now
    limits = event.get("rate_limits")
    if not isinstance(limits, Mapping):
        return []
    family = event_family(event)
    out: list[WindowReading] = []
    for window in ("primary", "secondary"):
        fields = limits.get(window)
        if isinstance(fields, Mapping):
            reading = _reading(family, window, fields, now)
            if reading is not None:
                out.append(reading)
    return out


async def record_readings(
    store: StateStore, *, account_id: int, model: str, readings: list[WindowReading], family: str | None
) -> None:
    for r in readings:
        await quota_snapshot_set(
            store,
            account_id=account_id,
            family=r.family,
            used_percent=r.used_percent,
            resets_at=r.resets_at,
            window_minutes=r.window_minutes,
            window=r.window,
        )
    if family:
        await quota_family_remember(store, account_id=account_id, model=model, family=family)
