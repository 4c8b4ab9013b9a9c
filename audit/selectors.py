"""Reads for the usage dashboards and exports. Dashboards read rollups only, never raw rows.

Every read takes a `UsageScope` (what the user may see) and a `UsageFilter` (what they asked
for: a team, a developer, a key, an account, a model). Both narrow the rollups; the cube read
is the narrowest one that still has every dimension the read groups or filters by (see
`_cube`), so an unfiltered 90-day page reads about days x accounts x models rows however many
keys and raw rows there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, cast

from django.db.models import F, Max, Q, QuerySet, Sum

from accounts.models import ClientKey
from audit.models import TTFB_BOUNDS_MS, Granularity, UsageRecord, UsageRollup
from audit.rollups import DAY_CUBES, HOUR_CUBES, SUM_COLUMNS, TTFB_FIELDS

Dimension = Literal["account", "developer", "key", "team", "model"]
TOP_N = 6
NO_KEY = "(no key)"


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


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """What the reader narrowed the view to (every field optional). The same names are the
    records list's filter parameters, so a drill-down link is just these as a query string."""

    team: int | None = None
    developer: str = ""  # a key owner's name (owner label, else username, else key name)
    key: int | None = None
    account: int | None = None
    model: str = ""

    def params(self, **more: Any) -> dict[str, str]:
        merged = {
            "team": self.team,
            "developer": self.developer,
            "key": self.key,
            "account": self.account,
            "model": self.model,
            **more,
        }
        return {k: str(v) for k, v in merged.items() if v not in (None, "")}

    @property
    def narrows_keys(self) -> bool:
        return self.team is not None or bool(self.developer) or self.key is not None


@dataclass(frozen=True, slots=True)
class KeyPerson:
    """Who a key belongs to, as people read it (names, not prefixes)."""

    name: str
    developer: str
    team: str
    team_id: int | None


def key_people(key_ids: Iterable[int] | None = None) -> dict[int, KeyPerson]:
    """Key id -> names, for labels and exports (the keys table is small)."""
    qs = ClientKey.objects.all() if key_ids is None else ClientKey.objects.filter(id__in=list(key_ids))
    out = {}
    for kid, name, owner_label, username, team_id, team in qs.values_list(
        "id", "name", "owner_label", "owner__username", "team_id", "team__name"
    ):
        out[kid] = KeyPerson(name=name, developer=owner_label or username or name, team=team or "", team_id=team_id)
    return out


def _developer_q(developer: str) -> Q:
    """Keys whose developer name (see KeyPerson.developer) is `developer`."""
    return (
        Q(owner_label=developer)
        | Q(owner_label="", owner__username=developer)
        | Q(owner_label="", owner__isnull=True, name=developer)
    )


def filter_key_ids(scope: UsageScope, flt: UsageFilter) -> frozenset[int] | None:
    """The keys a read is limited to (None = no limit): the scope's and the filter's."""
    if not flt.narrows_keys:
        return None if scope.all_keys else scope.key_ids
    qs = ClientKey.objects.all()
    if flt.team is not None:
        qs = qs.filter(team_id=flt.team)
    if flt.key is not None:
        qs = qs.filter(id=flt.key)
    if flt.developer:
        qs = qs.filter(_developer_q(flt.developer))
    ids = frozenset(qs.values_list("id", flat=True))
    return ids if scope.all_keys else ids & scope.key_ids


def granularity_for(start: datetime, end: datetime) -> str:
    # Hourly points up to 3 days (<= 72 points), daily beyond: charts stay readable and cheap.
    return Granularity.HOUR if end - start <= timedelta(days=3) else Granularity.DAY


def _cube(granularity: str, needs: set[str]) -> str:
    """The narrowest cube that has every dimension in `needs` ("account", "key", "model")."""
    full, account_model, key, account_key = HOUR_CUBES if granularity == Granularity.HOUR else DAY_CUBES
    if needs <= {"account", "model"}:
        return account_model
    if needs <= {"key"}:
        return key
    if needs <= {"account", "key"}:
        return account_key
    return full


def _rollups(
    scope: UsageScope, flt: UsageFilter, granularity: str, start: datetime, end: datetime, dims: set[str]
) -> QuerySet[UsageRollup]:
    key_ids = filter_key_ids(scope, flt)
    needs = set(dims)
    if key_ids is not None:
        needs.add("key")
    if flt.account is not None:
        needs.add("account")
    if flt.model:
        needs.add("model")
    qs = UsageRollup.objects.filter(granularity=_cube(granularity, needs), bucket__gte=start, bucket__lt=end)
    if key_ids is not None:
        qs = qs.filter(client_key_id__in=key_ids)
    if flt.account is not None:
        qs = qs.filter(account_id=flt.account)
    if flt.model:
        qs = qs.filter(model=flt.model)
    return qs


def buckets_between(start: datetime, end: datetime, granularity: str, *, now: datetime | None = None) -> list[datetime]:
    """Chart points from start to end, never past now: a day in progress has no future hours."""
    step = timedelta(hours=1) if granularity == Granularity.HOUR else timedelta(days=1)
    first = start.replace(minute=0, second=0, microsecond=0)
    if granularity == Granularity.DAY:
        first = first.replace(hour=0)
    stop = min(end, now or datetime.now(UTC))
    out = []
    t = first
    while t < stop:
        out.append(t)
        t += step
    return out


_DIMENSION_COLUMN = {"account": "account_id", "developer": "client_key_id", "key": "client_key_id",
                     "team": "client_key_id", "model": "model"}  # fmt: skip
_DIMENSION_NEEDS = {"account": "account", "developer": "key", "key": "key", "team": "key", "model": "model"}


@dataclass(slots=True)
class BreakdownRow:
    label: str
    requests: int
    tokens: int
    cost_nano: int
    params: dict[str, str]  # the filter that narrows to this row (drill-down)


@dataclass(slots=True)
class Breakdown:
    """Series per dimension value (top N + 'other'), aligned with `buckets`."""

    requests: dict[str, list[float]] = field(default_factory=dict)
    tokens: dict[str, list[float]] = field(default_factory=dict)
    cost: dict[str, list[float]] = field(default_factory=dict)  # USD
    rows: list[BreakdownRow] = field(default_factory=list)  # every value, most requests first
    links: dict[str, dict[str, str]] = field(default_factory=dict)  # series label -> filter params


def _value_label(dimension: Dimension, value: Any, people: dict[int, KeyPerson], accounts: dict[int, str]) -> Any:
    """(label, filter params) of one grouped value."""
    if dimension == "account":
        return accounts.get(value, f"account #{value}" if value else "(no account)"), {"account": value or None}
    if dimension == "model":
        return value or "(none)", {"model": value}
    person = people.get(value)
    if person is None:
        return NO_KEY if not value else f"key #{value}", {"key": value or None}
    if dimension == "developer":
        return person.developer, {"developer": person.developer}
    if dimension == "team":
        return person.team or "(no team)", {"team": person.team_id}
    return f"{person.name} ({person.developer})", {"key": value}


def usage_breakdown(
    *,
    scope: UsageScope,
    start: datetime,
    end: datetime,
    dimension: Dimension,
    buckets: list[datetime],
    flt: UsageFilter | None = None,
) -> Breakdown:
    flt = flt or UsageFilter()
    column = _DIMENSION_COLUMN[dimension]
    sums: dict[str, Any] = {
        "req": Sum("requests"),
        "tok": Sum(F("input_tokens") + F("output_tokens")),
        "cost": Sum("cost_nanousd"),
    }
    if dimension == "account":
        sums["alabel"] = Max("account_label")
    qs = _rollups(scope, flt, granularity_for(start, end), start, end, {_DIMENSION_NEEDS[dimension]})
    rows = list(qs.values("bucket", column).annotate(**sums).order_by())
    people = key_people({r[column] for r in rows if r[column]}) if column == "client_key_id" else {}
    accounts = _account_labels(rows) if dimension == "account" else {}
    index = {b: i for i, b in enumerate(buckets)}
    n = len(buckets)
    series: dict[str, list[list[float]]] = defaultdict(lambda: [[0.0] * n, [0.0] * n, [0.0] * n])
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    params: dict[str, dict[str, str]] = {}
    for row in rows:
        label, narrow = _value_label(dimension, row[column], people, accounts)
        params[label] = flt.params(**narrow)
        req, tok, cost = row["req"] or 0, row["tok"] or 0, row["cost"] or 0
        t = totals[label]
        t[0], t[1], t[2] = t[0] + req, t[1] + tok, t[2] + cost
        i = index.get(row["bucket"])
        if i is not None:
            s = series[label]
            s[0][i] += req
            s[1][i] += tok
            s[2][i] += cost / 1e9
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    out = Breakdown(rows=[BreakdownRow(label, t[0], t[1], t[2], params[label]) for label, t in ranked])
    for label, _ in ranked[:TOP_N]:
        s = series[label]
        out.requests[label], out.tokens[label], out.cost[label] = s[0], s[1], s[2]
        out.links[label] = params[label]
    if len(ranked) > TOP_N:
        other = [[0.0] * n, [0.0] * n, [0.0] * n]
        for label, _ in ranked[TOP_N:]:
            for k in range(3):
                for i, v in enumerate(series[label][k]):
                    other[k][i] += v
        out.requests["other"], out.tokens["other"], out.cost["other"] = other
    return out


def _account_labels(rows: Iterable[Any]) -> dict[int, str]:
    """Account id -> its current label; a deleted account keeps the label its rollups carry."""
    from accounts.models import UpstreamAccount

    ids = {r["account_id"] for r in rows if r["account_id"]}
    labels = dict(UpstreamAccount.objects.filter(id__in=ids).values_list("id", "label"))
    for r in rows:
        if r["account_id"] and r["account_id"] not in labels:
            labels[r["account_id"]] = r.get("alabel") or f"account #{r['account_id']}"
    return labels


@dataclass(slots=True)
class Matrix:
    """Developer x account: requests and cost per cell (who used which account)."""

    developers: list[str]
    accounts: list[tuple[str, int]]  # (label, id)
    cells: dict[tuple[str, int], tuple[int, int]]  # (developer, account id) -> (requests, nano-USD)
    params: dict[tuple[str, int], dict[str, str]]


def usage_matrix(*, scope: UsageScope, start: datetime, end: datetime, flt: UsageFilter | None = None) -> Matrix:
    flt = flt or UsageFilter()
    rows = list(
        _rollups(scope, flt, granularity_for(start, end), start, end, {"account", "key"})
        .values("client_key_id", "account_id")
        .annotate(req=Sum("requests"), cost=Sum("cost_nanousd"), alabel=Max("account_label"))
        .order_by()
    )
    people = key_people({r["client_key_id"] for r in rows if r["client_key_id"]})
    accounts = _account_labels(rows)
    cells: dict[tuple[str, int], tuple[int, int]] = {}
    params: dict[tuple[str, int], dict[str, str]] = {}
    by_dev: dict[str, int] = defaultdict(int)
    by_acct: dict[int, int] = defaultdict(int)
    for r in rows:
        person = people.get(r["client_key_id"])
        dev = person.developer if person else NO_KEY
        aid = r["account_id"] or 0
        req, cost = cells.get((dev, aid), (0, 0))
        cells[dev, aid] = (req + (r["req"] or 0), cost + (r["cost"] or 0))
        params[dev, aid] = flt.params(developer=dev if person else None, account=aid or None)
        by_dev[dev] += r["req"] or 0
        by_acct[aid] += r["req"] or 0
    developers = sorted(by_dev, key=lambda d: (-by_dev[d], d))
    account_cols = sorted(
        ((accounts.get(a, "(no account)"), a) for a in by_acct), key=lambda la: (-by_acct[la[1]], la[0])
    )
    return Matrix(developers=developers, accounts=account_cols, cells=cells, params=params)


def ttfb_percentile(counts: list[int], q: float) -> float | None:
    """The q-quantile of a TTFB histogram, interpolated linearly inside the bucket that holds
    it (buckets are (previous bound, bound]). Values in the open top bucket read as its lower
    bound (">= 30 s")."""
    total = sum(counts)
    if not total:
        return None
    target, seen = q * total, 0
    for i, c in enumerate(counts):
        if c and seen + c >= target:
            low = float(TTFB_BOUNDS_MS[i - 1]) if i else 0.0
            if i >= len(TTFB_BOUNDS_MS):
                return low
            return low + (TTFB_BOUNDS_MS[i] - low) * (target - seen) / c
        seen += c
    return float(TTFB_BOUNDS_MS[-1])


@dataclass(slots=True)
class Health:
    error_rate: list[float]  # % of requests per bucket
    failover_rate: list[float]  # % needing another account (cooldown or failure)
    rate_limited: list[float]  # % answered 429
    ttfb: dict[str, list[float]]  # p50/p95/p99 per bucket (ms)
    totals: dict[str, Any]


def usage_health(
    *, scope: UsageScope, start: datetime, end: datetime, buckets: list[datetime], flt: UsageFilter | None = None
) -> Health:
    flt = flt or UsageFilter()
    sums = {c: Sum(c) for c in SUM_COLUMNS}
    # Typed loosely: the stubs cannot see keys built from SUM_COLUMNS.
    qs = _rollups(scope, flt, granularity_for(start, end), start, end, set()).values("bucket").annotate(**sums)
    rows = cast("Iterable[dict[str, Any]]", qs.order_by())
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
            pct[name][i] = ttfb_percentile(hist, q) or 0.0
    hist_total = [totals[f] for f in TTFB_FIELDS]
    summary: dict[str, Any] = dict(totals)
    summary.update(
        tokens=totals["input_tokens"] + totals["output_tokens"],
        error_pct=100.0 * totals["upstream_errors"] / totals["requests"] if totals["requests"] else 0.0,
        failover_pct=100.0 * totals["failovers"] / totals["requests"] if totals["requests"] else 0.0,
        p50=ttfb_percentile(hist_total, 0.5),
        p95=ttfb_percentile(hist_total, 0.95),
        p99=ttfb_percentile(hist_total, 0.99),
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


def usd_text(nano: int | None) -> str:
    """Exact USD for exports ('0.000435000'); empty when the price is unknown."""
    return "" if nano is None else format(Decimal(nano).scaleb(-9), "f")


_ROLLUP_DB_COLUMNS = ("bucket", "account_id", "account_label", "client_key_id", "key_prefix", "model")
ROLLUP_CSV_COLUMNS = (
    *_ROLLUP_DB_COLUMNS[:5],
    "key_name",
    "developer",
    "team",
    "model",
    *(c for c in SUM_COLUMNS if c != "cost_nanousd"),
    "cost_usd",
)
_RECORD_DB_COLUMNS = (
    "created_at",
    "request_id",
    "key_prefix",
    "client_key__name",
    "client_key__owner_label",
    "client_key__owner__username",
    "client_key__team__name",
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
    "cache_creation_tokens",
    "reasoning_tokens",
    "cost_nanousd",
    "price_source",
    "ttfb_ms",
    "duration_ms",
    "attempts",
    "error_code",
)
RECORD_CSV_COLUMNS = (
    "created_at",
    "request_id",
    "key_prefix",
    "key_name",
    "developer",
    "team",
    *_RECORD_DB_COLUMNS[7:19],
    "cost_usd",
    *_RECORD_DB_COLUMNS[20:],
)


def rollup_rows(
    *, scope: UsageScope, start: datetime, end: datetime, granularity: str, flt: UsageFilter | None = None
) -> Iterator[tuple[Any, ...]]:
    flt = flt or UsageFilter()
    # Exports always carry every dimension: the full cube of the grain asked for.
    full = Granularity.HOUR if granularity in HOUR_CUBES else Granularity.DAY
    qs = _rollups(scope, flt, full, start, end, {"account", "key", "model"})
    qs = qs.order_by("bucket", "account_id", "client_key_id", "model")
    people = key_people()
    # iterator(): server-side cursor on PostgreSQL, rows never all in memory.
    sums = tuple(c for c in SUM_COLUMNS if c != "cost_nanousd")
    for row in qs.values_list(*_ROLLUP_DB_COLUMNS, *sums, "cost_nanousd").iterator(chunk_size=5000):
        person = people.get(row[3])
        names = (person.name, person.developer, person.team) if person else ("", "", "")
        yield (*row[:5], *names, row[5], *row[6:-1], usd_text(row[-1]))


def record_rows(
    *, scope: UsageScope, start: datetime, end: datetime, flt: UsageFilter | None = None
) -> Iterator[tuple[Any, ...]]:
    qs = records_filtered(UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end), scope, flt)
    for row in qs.order_by("created_at", "id").values_list(*_RECORD_DB_COLUMNS).iterator(chunk_size=5000):
        name, owner_label, username, team = row[3:7]
        developer = owner_label or username or name or ""
        yield (*row[:3], name or "", developer, team or "", *row[7:19], usd_text(row[19]), *row[20:])


def records_filtered(qs: QuerySet[Any], scope: UsageScope, flt: UsageFilter | None) -> QuerySet[Any]:
    """Raw records narrowed by scope and filter (records list, record export)."""
    flt = flt or UsageFilter()
    key_ids = filter_key_ids(scope, flt)
    if key_ids is not None:
        qs = qs.filter(client_key_id__in=key_ids)
    if flt.account is not None:
        qs = qs.filter(account_id=flt.account)
    if flt.model:
        qs = qs.filter(requested_model=flt.model)
    return qs
