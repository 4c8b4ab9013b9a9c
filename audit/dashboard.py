"""The usage dashboard: its filter form and what the page shows (charts, tables, matrix).

The view (audit.admin) parses the request and renders; everything read here comes from the
selectors (rollups only). Every chart point, legend entry and table row links to the usage
records behind it: the records list takes the same filter parameters (audit.admin filters).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.urls import reverse

from accounts.models import ClientKey, Team, UpstreamAccount
from audit.charts import Chart, line_chart
from audit.models import Granularity
from audit.selectors import (
    Health,
    Matrix,
    UsageFilter,
    UsageScope,
    buckets_between,
    granularity_for,
    usage_breakdown,
    usage_health,
    usage_matrix,
)
from pricing.cost import usd_format

MAX_RANGE_DAYS = 400


class RangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="inclusive")

    def bounds(self) -> tuple[datetime, datetime]:
        """[start, end) in UTC; defaults to the last 7 days including today."""
        today = datetime.now(UTC).date()
        data = self.cleaned_data if self.is_valid() else {}
        end_day: date = data.get("end") or today
        start_day: date = data.get("start") or end_day - timedelta(days=6)
        if start_day > end_day:
            start_day, end_day = end_day, start_day
        start_day = max(start_day, end_day - timedelta(days=MAX_RANGE_DAYS))
        return (
            datetime.combine(start_day, time.min, tzinfo=UTC),
            datetime.combine(end_day + timedelta(days=1), time.min, tzinfo=UTC),
        )


class DashboardForm(RangeForm):
    """Date range plus what to narrow to. Choices are the small tables (teams, keys,
    accounts); a staff member scoped to their own keys only gets their keys to choose from."""

    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    developer = forms.ChoiceField(required=False)
    key = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    account = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    model = forms.CharField(required=False, max_length=200)

    def __init__(self, *args: Any, scope: UsageScope, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keys = ClientKey.objects.select_related("owner", "team").order_by("name")
        if not scope.all_keys:
            keys = keys.filter(id__in=scope.key_ids)
        key_rows = list(keys)
        developers = sorted({k.owner_label or (k.owner.username if k.owner else "") or k.name for k in key_rows})
        every: list[tuple[Any, str]] = [("", "all")]
        choices: dict[str, list[tuple[Any, str]]] = {
            "team": every + [(t.pk, t.name) for t in _teams_of(scope, key_rows)],
            "developer": every + [(d, d) for d in developers],
            "key": every + [(k.pk, k.name) for k in key_rows],
            "account": every + list(UpstreamAccount.objects.order_by("label").values_list("id", "label")),
        }
        for name, options in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = options

    def usage_filter(self) -> UsageFilter:
        data = self.cleaned_data if self.is_valid() else {}
        return UsageFilter(
            team=data.get("team"),
            developer=data.get("developer") or "",
            key=data.get("key"),
            account=data.get("account"),
            model=(data.get("model") or "").strip(),
        )


def _teams_of(scope: UsageScope, keys: list[ClientKey]) -> list[Team]:
    """Teams a user may pick: all of them, or (seeing only their own keys) their keys' teams."""
    teams = Team.objects.order_by("name")
    return list(teams if scope.all_keys else teams.filter(id__in={k.team_id for k in keys if k.team_id}))


def records_url(params: dict[str, str], start: datetime, end: datetime) -> str:
    """The records list narrowed to `params` between start and end (a drill-down)."""
    query = {"created_at__gte": start.isoformat(), "created_at__lt": end.isoformat(), **params}
    return reverse("admin:audit_usagerecord_changelist") + "?" + urlencode(query)


def _linker(
    base: UsageFilter, links: dict[str, dict[str, str]], buckets: list[datetime], step: timedelta, end: datetime
) -> Any:
    def link(series: str | None, index: int | None) -> str:
        params = links.get(series, base.params()) if series else base.params()
        if index is None:
            return records_url(params, buckets[0] if buckets else end, end)
        return records_url(params, buckets[index], min(buckets[index] + step, end))

    return link


def dashboard_context(*, scope: UsageScope, start: datetime, end: datetime, flt: UsageFilter) -> dict[str, Any]:
    granularity = granularity_for(start, end)
    hourly = granularity == Granularity.HOUR
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    buckets = buckets_between(start, end, granularity)
    charts: list[Chart] = []
    tables = []
    for dimension in ("account", "developer", "model"):
        b = usage_breakdown(scope=scope, start=start, end=end, dimension=dimension, buckets=buckets, flt=flt)  # type: ignore[arg-type]
        link = _linker(flt, b.links, buckets, step, end)
        charts.append(
            line_chart(
                title=f"Requests by {dimension}",
                x=buckets,
                series=b.requests,
                hourly=hourly,
                link=link,
                chart_id=f"chart-requests-{dimension}",
            )
        )
        charts.append(
            line_chart(
                title=f"Spend by {dimension} (USD)",
                x=buckets,
                series=b.cost,
                unit="$",
                integer=False,
                hourly=hourly,
                link=link,
                chart_id=f"chart-spend-{dimension}",
            )
        )
        tables.append(_table(dimension, b.rows, start, end))
    for dimension in ("team", "key"):
        b = usage_breakdown(scope=scope, start=start, end=end, dimension=dimension, buckets=buckets, flt=flt)  # type: ignore[arg-type]
        tables.append(_table(dimension, b.rows, start, end))
    health = usage_health(scope=scope, start=start, end=end, buckets=buckets, flt=flt)
    charts.extend(_health_charts(health, buckets, hourly, _linker(flt, {}, buckets, step, end)))
    matrix = usage_matrix(scope=scope, start=start, end=end, flt=flt)
    totals = dict(health.totals)
    totals["cost"] = usd_format(totals["cost_nanousd"])
    return {
        "granularity": "hourly" if hourly else "daily",
        "charts": charts,
        "tables": tables,
        "matrix": _matrix_rows(matrix, start, end),
        "totals": totals,
        "all_records": records_url(flt.params(), start, end),
    }


def _health_charts(health: Health, buckets: list[datetime], hourly: bool, base_link: Any) -> list[Chart]:
    return [
        line_chart(
            title="Errors and failovers (% of requests)",
            x=buckets,
            series={
                "upstream errors": health.error_rate,
                "failover / cooldown": health.failover_rate,
                "429 to client": health.rate_limited,
            },
            unit="%",
            integer=False,
            hourly=hourly,
            zero_is_data=bool(health.totals["requests"]),
            link=lambda series, i: base_link(None, i),
            chart_id="chart-errors",
        ),
        line_chart(
            title="Time to first byte (ms)",
            x=buckets,
            series=health.ttfb,
            hourly=hourly,
            integer=False,
            link=lambda series, i: base_link(None, i),
            chart_id="chart-ttfb",
        ),
    ]


def _matrix_rows(matrix: Matrix, start: datetime, end: datetime) -> dict[str, Any]:
    """Developer x account cells: (counts, spend, link to the records)."""
    return {
        "accounts": matrix.accounts,
        "rows": [
            (
                dev,
                [
                    (
                        matrix.cells.get((dev, aid)),
                        usd_format(matrix.cells[(dev, aid)][1]) if (dev, aid) in matrix.cells else "",
                        records_url(matrix.params[(dev, aid)], start, end) if (dev, aid) in matrix.params else "",
                    )
                    for _, aid in matrix.accounts
                ],
            )
            for dev in matrix.developers
        ],
    }


def _table(dimension: str, rows: list[Any], start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "dimension": dimension,
        "rows": [
            (r.label, r.requests, r.tokens, usd_format(r.cost_nano), records_url(r.params, start, end))
            for r in rows[:25]
        ],
        "more": max(0, len(rows) - 25),
    }
