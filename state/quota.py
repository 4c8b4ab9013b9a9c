"""Per-account, per-limit-family quota readings in the shared state store.

Providers that meter usage in windows (Codex: a 5-hour and a weekly window per limit family)
report readings on every answer. Executors write them here; account selection and the admin
board read them. Nothing here knows a provider: a family is an opaque string chosen by the
executor, and a window is a name ("primary", "secondary", ...) within it.

Readings are hints for pre-emptive balancing only; the upstream has the last word (a 429 is
still what cools an account down). A reading expires at its window's reset, because after
the reset the old percentage says nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from statestore import StateStore

# Readings without a reset instant are kept this long: long enough to balance on, short
# enough that a family the upstream stopped reporting disappears on its own.
DEFAULT_TTL_SECONDS = 6 * 3600.0
# The family index is a small JSON list; cap it so a misbehaving upstream inventing family
# names on every answer cannot grow one key without bound.
_MAX_FAMILIES = 32


@dataclass(frozen=True, slots=True)
class QuotaSnapshot:
    account_id: int
    family: str
    window: str  # "primary", "secondary", ...
    used_percent: float  # 0..100 (may exceed 100 when the upstream over-reports)
    resets_at: float | None  # epoch seconds; None = unknown
    window_minutes: int | None
    observed_at: float  # epoch seconds

    @property
    def headroom(self) -> float:
        """Fraction of the window still available, 0.0..1.0."""
        return max(0.0, min(1.0, (100.0 - self.used_percent) / 100.0))


def _key(account_id: int, family: str, window: str) -> str:
    return f"quota:{account_id}:{family}:{window}"


def headroom_key(account_id: int) -> str:
    """The account's tightest headroom over all live windows, kept for account selection
    (read together with cooldowns in one round trip)."""
    return f"quota:{account_id}:headroom"


def headroom_parse(raw: bytes | None) -> float | None:
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


def _index_key(account_id: int) -> str:
    return f"quota:{account_id}:index"


async def _index(store: StateStore, account_id: int) -> list[str]:
    raw = await store.get(_index_key(account_id))
    if not raw:
        return []
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


async def quota_snapshot_set(
    store: StateStore,
    *,
    account_id: int,
    family: str,
    used_percent: float,
    resets_at: float | None,
    window_minutes: int | None,
    window: str = "primary",
    now: float | None = None,
) -> QuotaSnapshot:
    """Record one window reading; it expires at `resets_at` (or after DEFAULT_TTL_SECONDS)."""
    now = time.time() if now is None else now
    snap = QuotaSnapshot(
        account_id=account_id,
        family=family,
        window=window,
        used_percent=float(used_percent),
        resets_at=resets_at,
        window_minutes=window_minutes,
        observed_at=now,
    )
    ttl = (resets_at - now) if resets_at is not None else DEFAULT_TTL_SECONDS
    if ttl <= 0:
        # The window already reset: the reading is stale on arrival; drop any older one.
        await store.delete(_key(account_id, family, window))
        return snap
    payload = orjson.dumps({"u": snap.used_percent, "r": resets_at, "w": window_minutes, "o": now})
    await store.set(_key(account_id, family, window), payload, ttl=ttl)
    member = f"{family}\x00{window}"
    members = await _index(store, account_id)
    if member not in members:
        # Read-modify-write without a lock: two writers adding different new families at
        # the same instant can lose one name until its next reading (a few seconds at most).
        members = [*members, member][-_MAX_FAMILIES:]
        await store.set(_index_key(account_id), orjson.dumps(members))
    live = await quota_snapshots(store, account_id=account_id)
    if live:
        soonest = min((x.resets_at for x in live if x.resets_at is not None), default=None)
        await store.set(
            headroom_key(account_id),
            str(min(x.headroom for x in live)).encode(),
            ttl=(soonest - now) if soonest is not None and soonest > now else DEFAULT_TTL_SECONDS,
        )
    return snap


async def quota_snapshots(store: StateStore, *, account_id: int) -> list[QuotaSnapshot]:
    """Every live reading of the account, sorted by (family, window)."""
    out: list[QuotaSnapshot] = []
    for member in await _index(store, account_id):
        family, _, window = member.partition("\x00")
        raw = await store.get(_key(account_id, family, window))
        if raw is None:
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        out.append(
            QuotaSnapshot(
                account_id=account_id,
                family=family,
                window=window,
                used_percent=float(data["u"]),
                resets_at=data.get("r"),
                window_minutes=data.get("w"),
                observed_at=float(data.get("o") or 0.0),
            )
        )
    out.sort(key=lambda s: (s.family, s.window))
    return out


async def quota_headroom(store: StateStore, *, account_id: int, family: str) -> float | None:
    """Fraction still available in the family's tightest live window; None = no reading."""
    readings = [s for s in await quota_snapshots(store, account_id=account_id) if s.family == family]
    if not readings:
        return None
    return min(s.headroom for s in readings)


# Model -> family: the upstream names the family that metered a request (Codex:
# `x-codex-active-limit`); remembering it lets a 429 without that hint cool the right family.
def _family_key(account_id: int, model: str) -> str:
    return f"quota:{account_id}:model:{model}"


async def quota_family_remember(store: StateStore, *, account_id: int, model: str, family: str) -> None:
    await store.set(_family_key(account_id, model), family.encode(), ttl=7 * 86400.0)


async def quota_family_for_model(store: StateStore, *, account_id: int, model: str) -> str | None:
    raw = await store.get(_family_key(account_id, model))
    return raw.decode() if raw else None
