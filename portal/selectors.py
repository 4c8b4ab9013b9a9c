"""Reads for the developer page: only the signed-in developer's keys and their usage.

Every query is filtered by `ClientKey.owner = user` (directly, or through the ids of the keys
they own); account names, credentials and other developers' keys are never read here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Q, Sum

from accounts.models import ClientKey, Team
from audit.models import Granularity, UsageRecord, UsageRollup


@dataclass(frozen=True, slots=True)
class TeamAllowance:
    team: Team
    held: int  # enabled keys of this member in the team
    limit: int  # member_key_limit

    @property
    def can_create(self) -> bool:
        return self.held < self.limit


def member_keys(user: Any) -> list[ClientKey]:
    return list(ClientKey.objects.filter(owner=user).select_related("team").order_by("-enabled", "name"))


def member_teams(user: Any) -> list[TeamAllowance]:
    teams = Team.objects.filter(members=user).annotate(
        held=Count("keys", filter=Q(keys__owner=user, keys__enabled=True))
    )
    return [TeamAllowance(team=t, held=t.held, limit=t.member_key_limit) for t in teams.order_by("name")]


def member_daily_usage(
    key_ids: list[int], *, days: int = 7, now: datetime | None = None
) -> tuple[list[datetime], dict[int, list[float]]]:
    """Tokens per UTC day per key over the last `days` days (the day x key rollup)."""
    today = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    buckets = [today - timedelta(days=days - 1 - i) for i in range(days)]
    series: dict[int, list[float]] = {}
    if key_ids:
        rows = (
            UsageRollup.objects.filter(
                granularity=Granularity.DAY_KEY, client_key_id__in=key_ids, bucket__gte=buckets[0]
            )
            .values("bucket", "client_key_id")
            .annotate(inp=Sum("input_tokens"), out=Sum("output_tokens"))
            .order_by()
        )
        index = {b: i for i, b in enumerate(buckets)}
        for row in rows:
            i = index.get(row["bucket"])
            if i is not None:
                series.setdefault(row["client_key_id"], [0.0] * days)[i] += (row["inp"] or 0) + (row["out"] or 0)
    return buckets, series


RECORD_COLUMNS = (
    "created_at",
    "request_id",
    "client_key_id",
    "surface",
    "requested_model",
    "stream",
    "outcome",
    "status_code",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "ttfb_ms",
    "duration_ms",
    "error_code",
)


def member_records(key_ids: list[int], *, limit: int = 25) -> list[dict[str, Any]]:
    """The newest requests of these keys (no account columns)."""
    if not key_ids:
        return []
    return list(
        UsageRecord.objects.filter(client_key_id__in=key_ids)
        .order_by("-created_at", "-id")
        .values(*RECORD_COLUMNS)[:limit]
    )


def member_record_rows(key_ids: list[int], *, start: datetime, end: datetime) -> Iterator[tuple[Any, ...]]:
    """Rows for the developer's CSV export, oldest first, streamed."""
    if not key_ids:
        return
    qs = UsageRecord.objects.filter(client_key_id__in=key_ids, created_at__gte=start, created_at__lt=end)
    yield from qs.order_by("created_at", "id").values_list(*RECORD_COLUMNS).iterator(chunk_size=2000)
