"""Rollups: hourly and daily sums of UsageRecord, maintained incrementally (a service).

`rollups_update` folds raw rows with id > watermark into UsageRollup, one id range per
transaction, and moves the watermark in the same transaction: a crash or a second run never
counts a row twice, and a run that stops early resumes where it left off.

Why the id watermark is safe: rows are inserted only by the usage flusher, which holds one
store-wide lock, so ids become visible in increasing order (no lower id can commit after a
higher one was folded). Late rows (a request from an earlier hour flushed now) simply add to
their old hour's bucket, because the bucket comes from created_at, not from the id.

The upsert is one INSERT .. ON CONFLICT DO UPDATE SET col = col + excluded.col per chunk, the
same SQL on PostgreSQL and SQLite (3.24+), so concurrent runs cannot lose an addition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncHour

from audit.models import TTFB_BOUNDS_MS, Granularity, Outcome, RollupWatermark, UsageRecord, UsageRollup

log = logging.getLogger(__name__)

WATERMARK = "usage"
_KEY_COLUMNS = ("granularity", "bucket", "account_id", "client_key_id", "model")
_LABEL_COLUMNS = ("account_label", "key_prefix")
TTFB_FIELDS = tuple(f"ttfb_b{i}" for i in range(len(TTFB_BOUNDS_MS) + 1))
SUM_COLUMNS = (
    "requests",
    "ok",
    "upstream_errors",
    "rejected",
    "disconnects",
    "failovers",
    "rate_limited",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "duration_ms_sum",
    "ttfb_count",
    "ttfb_ms_sum",
    *TTFB_FIELDS,
)


def _ttfb_filters() -> list[Q]:
    filters, low = [], None
    for bound in TTFB_BOUNDS_MS:
        filters.append(Q(ttfb_ms__lte=bound) if low is None else Q(ttfb_ms__gt=low, ttfb_ms__lte=bound))
        low = bound
    filters.append(Q(ttfb_ms__gt=low))
    return filters


def _aggregates() -> dict[str, Any]:
    aggs: dict[str, Any] = {
        "requests": Count("id"),
        "ok": Count("id", filter=Q(outcome=Outcome.OK)),
        "upstream_errors": Count("id", filter=Q(outcome=Outcome.UPSTREAM_ERROR)),
        "rejected": Count("id", filter=Q(outcome=Outcome.REJECTED)),
        "disconnects": Count("id", filter=Q(outcome=Outcome.CLIENT_DISCONNECT)),
        "failovers": Count("id", filter=Q(attempts__gt=1)),
        "rate_limited": Count("id", filter=Q(status_code=429)),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "reasoning_tokens": Sum("reasoning_tokens"),
        "duration_ms_sum": Sum("duration_ms"),
        "ttfb_count": Count("ttfb_ms"),
        "ttfb_ms_sum": Sum("ttfb_ms"),
        "account_label": Max("account_label"),
        "key_prefix": Max("key_prefix"),
    }
    for name, flt in zip(TTFB_FIELDS, _ttfb_filters(), strict=True):
        aggs[name] = Count("id", filter=flt)
    return aggs


def _hourly_cells(lo: int, hi: int) -> list[dict[str, Any]]:
    rows = (
        UsageRecord.objects.filter(id__gt=lo, id__lte=hi)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour", "account_id", "client_key_id", "requested_model")
        .annotate(**_aggregates())
        .order_by()
    )
    cells = []
    for row in rows:
        cell = {c: int(row[c] or 0) for c in SUM_COLUMNS}
        cell.update(
            granularity=Granularity.HOUR,
            bucket=row["hour"],
            account_id=row["account_id"] or 0,
            client_key_id=row["client_key_id"] or 0,
            model=row["requested_model"] or "",
            account_label=row["account_label"] or "",
            key_prefix=row["key_prefix"] or "",
        )
        cells.append(cell)
    return cells


def _daily_cells(hourly: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Days are folded from the hour cells in memory: one scan of the raw rows serves both.
    days: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in hourly:
        day = cell["bucket"].replace(hour=0, minute=0, second=0, microsecond=0)
        key = (day, cell["account_id"], cell["client_key_id"], cell["model"])
        acc = days.get(key)
        if acc is None:
            days[key] = {**cell, "granularity": Granularity.DAY, "bucket": day}
        else:
            for c in SUM_COLUMNS:
                acc[c] += cell[c]
    return list(days.values())


def _upsert(cells: list[dict[str, Any]], chunk: int = 300) -> None:
    table = connection.ops.quote_name(UsageRollup._meta.db_table)
    columns = (*_KEY_COLUMNS, *_LABEL_COLUMNS, *SUM_COLUMNS)
    updates = ", ".join(
        [f"{c} = {table}.{c} + excluded.{c}" for c in SUM_COLUMNS] + [f"{c} = excluded.{c}" for c in _LABEL_COLUMNS]
    )
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(cells), chunk):
            part = cells[start : start + chunk]
            params: list[Any] = []
            for cell in part:
                for c in columns:
                    value = cell[c]
                    params.append(connection.ops.adapt_datetimefield_value(value) if c == "bucket" else value)
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([placeholder] * len(part))} "
                f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET {updates}",
                params,
            )


def rollups_update(*, batch: int = 50_000, max_batches: int | None = None) -> int:
    """Fold new usage records into the rollups; returns how many raw rows were folded."""
    newest = UsageRecord.objects.aggregate(m=Max("id"))["m"] or 0
    folded = 0
    done_batches = 0
    while max_batches is None or done_batches < max_batches:
        with transaction.atomic():
            mark, _ = RollupWatermark.objects.select_for_update().get_or_create(name=WATERMARK)
            lo = mark.last_id
            if lo >= newest:
                break
            hi = min(newest, lo + batch)
            hourly = _hourly_cells(lo, hi)
            _upsert(hourly + _daily_cells(hourly))
            folded += sum(c["requests"] for c in hourly)
            mark.last_id = hi
            mark.save(update_fields=["last_id", "updated_at"])
        done_batches += 1
    if folded:
        log.info("rollups: folded %d usage records", folded)
    return folded


def rollups_rebuild() -> int:
    """Recompute every rollup from the raw records (after a manual data fix)."""
    with transaction.atomic():
        UsageRollup.objects.all().delete()
        RollupWatermark.objects.filter(name=WATERMARK).delete()
    return rollups_update()


def rollups_lag() -> int:
    """Raw rows not yet folded (for health pages)."""
    mark = RollupWatermark.objects.filter(name=WATERMARK).values_list("last_id", flat=True).first() or 0
    return UsageRecord.objects.filter(id__gt=mark).count()


def rollup_now() -> datetime:
    return datetime.now(UTC)
