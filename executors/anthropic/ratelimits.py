"""Anthropic's rate-limit headers as quota readings (docs/protocols/anthropic.md#rate-limits).

Every answer (success or 429) may carry `anthropic-ratelimit-<kind>-{limit,remaining,reset}`
for kind `requests`, `tokens`, `input-tokens`, `output-tokens`: the limit, what is left, and
when the bucket is full again (RFC 3339). The limits are per model class, so the readings are
kept per upstream model (the quota "family"). Only the tightest window is written per answer:
one store write on the hot path, and it is the one that decides the account's headroom.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from state.quota import quota_snapshot_set
from statestore import StateStore

KINDS = ("requests", "tokens", "input-tokens", "output-tokens")
_PREFIX = "anthropic-ratelimit-"


@dataclass(frozen=True, slots=True)
class LimitReading:
    kind: str  # one of KINDS
    limit: int
    remaining: int
    resets_at: float | None  # epoch seconds

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.limit - self.remaining) / self.limit


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _instant(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def readings_from_headers(headers: Mapping[str, str]) -> list[LimitReading]:
    out: list[LimitReading] = []
    for kind in KINDS:
        limit = _int(headers.get(f"{_PREFIX}{kind}-limit"))
        remaining = _int(headers.get(f"{_PREFIX}{kind}-remaining"))
        if limit is None or remaining is None or limit <= 0:
            continue
        reset = _instant(headers.get(f"{_PREFIX}{kind}-reset"))
        out.append(LimitReading(kind, limit, max(0, min(remaining, limit)), reset))
    return out


def exhausted_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until the latest reset among the spent windows (remaining 0); None if none is."""
    now = time.time() if now is None else now
    waits = [r.resets_at - now for r in readings_from_headers(headers) if r.remaining == 0 and r.resets_at]
    return max(0.0, max(waits)) if waits else None


async def readings_record(store: StateStore, *, account_id: int, model: str, headers: Mapping[str, str]) -> None:
    readings = readings_from_headers(headers)
    if not readings:
        return
    tightest = max(readings, key=lambda r: r.used_percent)
    await quota_snapshot_set(
        store,
        account_id=account_id,
        family=model,
        used_percent=tightest.used_percent,
        resets_at=tightest.resets_at,
        window_minutes=None,
        window=tightest.kind,
    )
