"""What a key has used: last use, today's requests and tokens, and each limit's current window.

Read by the key admin and the developer page for one page of keys at a time: one query for the
last use (an indexed lookup per key, as correlated subqueries), one for today's rollup, and one
state-store session for the limit counters (the same counters enforcement charges, so
reservations of requests still running are included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import OuterRef, Subquery, Sum

from accounts.models import ClientKey
from accounts.selectors import key_info_from_row
from audit.models import Granularity, UsageRecord, UsageRollup
from state.limits import LimitUsage, limits_usage
from statestore import StateStore
from statestore.factory import call_sync


@dataclass(frozen=True, slots=True)
class KeyUsage:
    key_id: int
    last_used_at: datetime | None
    requests_today: int
    tokens_today: int
    limits: tuple[LimitUsage, ...] | None  # None: the state store did not answer

    def limit(self, which: str) -> LimitUsage | None:
        return next((u for u in self.limits or () if u.which == which), None)


def _last_used(ids: list[int]) -> dict[int, datetime | None]:
    newest = UsageRecord.objects.filter(client_key_id=OuterRef("pk")).order_by("-created_at").values("created_at")[:1]
    rows = ClientKey.objects.filter(pk__in=ids).annotate(last=Subquery(newest)).values_list("pk", "last")
    return dict(rows)


def _today(ids: list[int], now: datetime) -> dict[int, tuple[int, int]]:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        UsageRollup.objects.filter(granularity=Granularity.DAY_KEY, bucket=day, client_key_id__in=ids)
        .values("client_key_id")
        .annotate(req=Sum("requests"), inp=Sum("input_tokens"), out=Sum("output_tokens"))
        .order_by()
    )
    return {r["client_key_id"]: (r["req"] or 0, (r["inp"] or 0) + (r["out"] or 0)) for r in rows}


def keys_usage(keys: Sequence[ClientKey], *, now: datetime | None = None) -> dict[int, KeyUsage]:
    """Usage of each key (with its team loaded, for the effective limits)."""
    if not keys:
        return {}
    now = now or datetime.now(UTC)
    ids = [k.pk for k in keys]
    infos = [key_info_from_row(k) for k in keys]

    async def read(store: StateStore) -> dict[int, tuple[LimitUsage, ...]]:
        return {info.id: tuple(await limits_usage(store, key=info, now=now)) for info in infos}

    try:
        limits: dict[int, tuple[LimitUsage, ...]] | None = call_sync(read)
    except Exception:  # the store is down: the page still renders, limits say "n/a"
        limits = None
    last = _last_used(ids)
    today = _today(ids, now)
    return {
        pk: KeyUsage(
            key_id=pk,
            last_used_at=last.get(pk),
            requests_today=today.get(pk, (0, 0))[0],
            tokens_today=today.get(pk, (0, 0))[1],
            limits=None if limits is None else limits.get(pk, ()),
        )
        for pk in ids
    }
