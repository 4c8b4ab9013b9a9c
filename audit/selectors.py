"""Reads for the usage dashboards and exports. Dashboards read rollups only, never raw rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from django.db.models import F, QuerySet, Sum

from accounts.models import ClientKey
from audit.models import TTFB_BOUNDS_MS, Granularity, UsageRecord, UsageRollup
from audit.rollups import DAY_CUBES, HOUR_CUBES, SUM_COLUMNS, TTFB_FIELDS

Dimension = Literal["account", "developer", "model"]
TOP_N = 6


@dataclass(frozen=True, slots=True)
class UsageScope:
    """What one admin user may see: every key, or only keys they own."""

    all_keys: bool
    key_ids: frozenset[int] = frozenset()


def usage_scope_for(user: Any) -> UsageScope:
    if user.is_superuser or user.has_perm("audit.view_all_usage"):
        return UsageScope(all_keys=True)
    return UsageScope(
        all_keys=False, key_ids=frozenset(ClientKey.objects.filter(owner=user).values_list("id", flat=True))
    )


def granularity_for(start: datetime, end: datetime) -> str:
    # Hourly points up to 3 days (<= 72 points), daily beyond: charts stay readable and cheap.
    return Granularity.HOUR if end - start <= timedelta(days=3) else Granularity.DAY


def _cube(scope: UsageScope, granularity: str, dimension: Dimension | None) -> str:
    """The narrowest rollup cube that answers `dimension` (None = totals) for this scope.

    Unscoped readers get the narrow cubes (no key dimension for account/model/totals, only
    the key for developers): a 90-day page then reads about days x accounts x models rows,
    however many keys and raw rows there are. A scoped reader must filter by key, so reads
    the full cube through the (granularity, client_key_id, bucket) index: few rows, since
    they are one person's keys.
    """
    full, account_model, key = HOUR_CUBES if granularity == Granularity.HOUR else DAY_CUBES
    if not scope.all_keys:
        return full
    return key if dimension == "developer" else account_model


def _rollups(
    scope: UsageScope, granularity: str, start: datetime, end: datetime, dimension: Dimension | None = None
) -> QuerySet[UsageRollup]:
    qs = UsageRollup.objects.filter(granularity=_cube(scope, granularity, dimension), bucket__gte=start, bucket__lt=end)
    if not scope.all_keys:
        qs = qs.filter(client_key_id__in=scope.key_ids)
    return qs


def buckets_between(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    step = timedelta(hours=1) if granularity == Granularity.HOUR else timedelta(days=1)
    first = start.replace(minute=0, second=0, microsecond=0)
    if granularity == Granularity.DAY:
        first = first.replace(hour=0)
    out = []
    t = first
    while t < end:
        out.append(t)
        t += step
    return out


@dataclass(slots=True)
class Breakdown:
    """Series per dimension value (top N + 'other'), aligned with `buckets`."""

    requests: dict[str, list[float]] = field(default_factory=dict)
    tokens: dict[str, list[float]] = field(default_factory=dict)
    totals: list[tuple[str, int, int]] = field(default_factory=list)  # (label, requests, tokens)


def _developer_labels(key_ids: set[int]) -> dict[int, str]:
    labels = {}
    for kid, name, owner_label, username in ClientKey.objects.filter(id__in=key_ids).values_list(
        "id", "name", "owner_label", "owner__username"
    ):
        labels[kid] = owner_label or username or name
    return labels


def usage_breakdown(
    *, scope: UsageScope, start: datetime, end: datetime, dimension: Dimension, buckets: list[datetime]
) -> Breakdown:
    granularity = granularity_for(start, end)
    group = {"account": "account_label", "developer": "client_key_id", "model": "model"}[dimension]
    rows = (
        _rollups(scope, granularity, start, end, dimension)
        .values("bucket", group)
        .annotate(req=Sum("requests"), tok=Sum(F("input_tokens") + F("output_tokens")))
        .order_by()
    )
    index = {b: i for i, b in enumerate(buckets)}
    per_value: dict[Any, tuple[list[float], list[float]]] = defaultdict(
        lambda: ([0.0] * len(buckets), [0.0] * len(buckets))
    )
    for row in rows:
        i = index.get(row["bucket"])
        if i is None:
            continue
        req, tok = per_value[row[group]]
        req[i] += row["req"] or 0
        tok[i] += row["tok"] or 0
    if dimension == "developer":
        labels = _developer_labels({v for v in per_value if v})
        merged: dict[Any, tuple[list[float], list[float]]] = defaultdict(
            lambda: ([0.0] * len(buckets), [0.0] * len(buckets))
        )
        for kid, (req, tok) in per_value.items():
            m = merged[labels.get(kid, "(no key)" if not kid else f"key #{kid}")]
            for i in range(len(buckets)):
                m[0][i] += req[i]
                m[1][i] += tok[i]
        per_value = merged
    ranked = sorted(per_value.items(), key=lambda kv: -sum(kv[1][0]))
    out = Breakdown()
    for value, (req, tok) in ranked:
        out.totals.append((str(value or "(none)"), int(sum(req)), int(sum(tok))))
    for value, (req, tok) in ranked[:TOP_N]:
        label = str(value or "(none)")
        out.requests[label], out.tokens[label] = req, tok
    if len(ranked) > TOP_N:
        other_req, other_tok = [0.0] * len(buckets), [0.0] * len(buckets)
        for _, (req, tok) in ranked[TOP_N:]:
            for i in range(len(buckets)):
                other_req[i] += req[i]
                other_tok[i] += tok[i]
        out.requests["other"], out.tokens["other"] = other_req, other_tok
    return out


def _percentile(counts: list[int], q: float) -> float | None:
    """Upper bound of the histogram bucket holding the q-quantile (conservative)."""
    total = sum(counts)
    if not total:
        return None
    target, seen = q * total, 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= target:
            return float(TTFB_BOUNDS_MS[i]) if i < len(TTFB_BOUNDS_MS) else float(TTFB_BOUNDS_MS[-1] * 2)
    return None


@dataclass(slots=True)
class Health:
    error_rate: list[float]  # % of requests per bucket
    failover_rate: list[float]  # % needing another account (cooldown or failure)
    rate_limited: list[float]  # % answered 429
    ttfb: dict[str, list[float]]  # p50/p95/p99 per bucket (ms)
    totals: dict[str, Any]


def usage_health(*, scope: UsageScope, start: datetime, end: datetime, buckets: list[datetime]) -> Health:
    granularity = granularity_for(start, end)
    sums = {c: Sum(c) for c in SUM_COLUMNS}
    # Typed loosely: the stubs cannot see keys built from SUM_COLUMNS.
    qs = _rollups(scope, granularity, start, end).values("bucket").annotate(**sums).order_by()
    rows = cast("Iterable[dict[str, Any]]", qs)
    n = len(buckets)
    index = {b: i for i, b in enumerate(buckets)}
    err, fail, rl = [0.0] * n, [0.0] * n, [0.0] * n
    pct: dict[str, list[float]] = {"p50": [0.0] * n, "p95": [0.0] * n, "p99": [0.0] * n}
    totals: dict[str, int] = dict.fromkeys(SUM_COLUMNS, 0)
    for row in rows:
        for c in SUM_COLUMNS:
            totals[c] += row[c] or 0
        i = index.get(row["bucket"])
        if i is None or not row["requests"]:
            continue
        req = row["requests"]
        err[i] = 100.0 * (row["upstream_errors"] or 0) / req
        fail[i] = 100.0 * (row["failovers"] or 0) / req
        rl[i] = 100.0 * (row["rate_limited"] or 0) / req
        hist = [row[f] or 0 for f in TTFB_FIELDS]
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            pct[name][i] = _percentile(hist, q) or 0.0
    hist_total = [totals[f] for f in TTFB_FIELDS]
    summary: dict[str, Any] = dict(totals)
    summary.update(
        tokens=totals["input_tokens"] + totals["output_tokens"],
        error_pct=100.0 * totals["upstream_errors"] / totals["requests"] if totals["requests"] else 0.0,
        failover_pct=100.0 * totals["failovers"] / totals["requests"] if totals["requests"] else 0.0,
        p50=_percentile(hist_total, 0.5),
        p95=_percentile(hist_total, 0.95),
        p99=_percentile(hist_total, 0.99),
    )
    return Health(error_rate=err, failover_rate=fail, rate_limited=rl, ttfb=pct, totals=summary)


def usage_today_by_account(account_ids: list[int], today: datetime) -> dict[int, tuple[int, int]]:
    """(requests, tokens) today per account, from the daily rollups (one query)."""
    rows = (
        UsageRollup.objects.filter(granularity=Granularity.DAY, bucket=today, account_id__in=account_ids)
        .values("account_id")
        .annotate(req=Sum("requests"), tok=Sum(F("input_tokens") + F("output_tokens")))
        .order_by()
    )
    return {r["account_id"]: (r["req"] or 0, r["tok"] or 0) for r in rows}


# --------------------------------------------------------------------------- CSV exports

ROLLUP_CSV_COLUMNS = ("bucket", "account_id", "account_label", "client_key_id", "key_prefix", "model", *SUM_COLUMNS)
RECORD_CSV_COLUMNS = (
    "created_at",
    "request_id",
    "key_prefix",
    "account_label",
    "surface",
    "requested_model",
    "served_model",
    "stream",
    "outcome",
    "status_code",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "ttfb_ms",
    "duration_ms",
    "attempts",
    "error_code",
)


def rollup_rows(*, scope: UsageScope, start: datetime, end: datetime, granularity: str) -> Iterator[tuple[Any, ...]]:
    # Exports always carry every dimension: the full cube of the grain asked for.
    full = Granularity.HOUR if granularity in HOUR_CUBES else Granularity.DAY
    qs = UsageRollup.objects.filter(granularity=full, bucket__gte=start, bucket__lt=end)
    if not scope.all_keys:
        qs = qs.filter(client_key_id__in=scope.key_ids)
    qs = qs.order_by("bucket", "account_id", "client_key_id", "model")
    # iterator(): server-side cursor on PostgreSQL, rows never all in memory.
    yield from qs.values_list(*ROLLUP_CSV_COLUMNS).iterator(chunk_size=5000)


def record_rows(*, scope: UsageScope, start: datetime, end: datetime) -> Iterator[tuple[Any, ...]]:
    qs = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    if not scope.all_keys:
        qs = qs.filter(client_key_id__in=scope.key_ids)
    yield from qs.order_by("created_at", "id").values_list(*RECORD_CSV_COLUMNS).iterator(chunk_size=5000)
