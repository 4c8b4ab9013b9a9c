"""Usage audit in the admin: raw records, rollups, the action log, dashboards and CSV exports.

Every page is staff-only (admin_view) and CSRF-protected by Django's middleware. A staff
member without `audit.view_all_usage` sees only the usage of keys they own.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property

from accounts.models import UpstreamAccount
from audit.charts import line_chart
from audit.models import AdminAction, Granularity, UsageDeadLetter, UsageRecord, UsageRollup
from audit.selectors import (
    RECORD_CSV_COLUMNS,
    ROLLUP_CSV_COLUMNS,
    buckets_between,
    granularity_for,
    record_rows,
    rollup_rows,
    usage_breakdown,
    usage_health,
    usage_scope_for,
)

# The admin index links to the dashboards (template extends Django's own index).
admin.site.index_template = "audit/admin_index.html"
admin.site.site_header = "Team LLM proxy"
admin.site.site_title = "Team LLM proxy"
admin.site.index_title = "Accounts, keys and usage"

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


class _Echo:
    """csv.writer target that hands each line back instead of buffering it."""

    def write(self, value: str) -> str:
        return value


# OWASP CSV injection: a cell starting with one of these is a formula to Excel, LibreOffice
# and Google Sheets (=HYPERLINK(...), +cmd|..., @SUM, tab/CR tricks). Model names, labels and
# upstream error text come from clients and upstreams, so such cells get a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value safe to put in a spreadsheet cell (numbers stay numbers)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_stream(header: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([csv_cell(v) for v in row])


def _requires(perm: str) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """A custom admin view needs `perm` (admin_view already required staff): 403 without it."""

    def wrap(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.has_perm(perm):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return checked

    return wrap


def _scoped(request: HttpRequest, qs: QuerySet[Any]) -> QuerySet[Any]:
    scope = usage_scope_for(request.user)
    return qs if scope.all_keys else qs.filter(client_key_id__in=scope.key_ids)


class NoCountPaginator(Paginator):
    """A paginator that never runs COUNT(*): it only learns whether a next page exists.

    `show_full_result_count = False` skips the unfiltered count, but the admin still counts
    the *filtered* list for its paginator, which at millions of raw rows costs more than the
    page itself. Here `count` is rows before this page + rows on it (+1 if there are more),
    found by reading at most per_page + 1 keys at this page's offset along the ordering index.
    So the page links reach one page past the current one, and the template says "more"
    rather than a total.
    """

    def __init__(self, object_list: Any, per_page: int, *, page_number: int, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, **kwargs)
        self.page_number = max(page_number, 1)

    @cached_property
    def count(self) -> int:
        offset = (self.page_number - 1) * self.per_page
        rows = self.object_list
        if hasattr(rows, "values_list"):  # a queryset: fetch keys only
            rows = rows.values_list("pk", flat=True)
        return offset + len(rows[offset : offset + self.per_page + 1])


class NoCountAdmin(admin.ModelAdmin):
    """Admin list settings for tables with millions of rows: no query scans the whole table.

    No date_hierarchy (its year/month links are a DISTINCT over every row), no "show all",
    no facet counts, no full count; date and value filters come from small tables or fixed
    choices (see the filters below).
    """

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_max_show_all = 0

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: Any,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        try:
            page = int(request.GET.get("p", 1))
        except ValueError:
            page = 1
        return NoCountPaginator(
            queryset, per_page, page_number=page, orphans=orphans, allow_empty_first_page=allow_empty_first_page
        )


class AccountFilter(admin.SimpleListFilter):
    """Filter by account id (indexed) with labels from the small accounts table.

    The stock filter on account_label would list its values with SELECT DISTINCT over every
    usage row. Records of a deleted account stay findable through the search box.
    """

    title = "account"
    parameter_name = "account"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(str(pk), label) for pk, label in UpstreamAccount.objects.order_by("label").values_list("id", "label")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(account_id=int(value)) if value and value.isdigit() else queryset


class SurfaceFilter(admin.SimpleListFilter):
    """Fixed choices instead of the stock SELECT DISTINCT surface over every usage row."""

    title = "surface"
    parameter_name = "surface"
    # Every surface routing/proxy.py records: one per client dialect, plus token counting.
    SURFACES = ("chat", "responses", "messages", "messages.count_tokens")

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(s, s) for s in self.SURFACES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(surface=value) if value else queryset


@admin.register(UsageRecord)
class UsageRecordAdmin(NoCountAdmin):
    list_display = [
        "created_at",
        "key_prefix",
        "account_label",
        "surface",
        "requested_model",
        "stream",
        "outcome",
        "status_code",
        "input_tokens",
        "output_tokens",
        "ttfb_ms",
        "duration_ms",
    ]
    # The default ordering (-created_at, then -pk added by the admin) walks the created_at
    # index backwards; every filter here is either fixed choices or an indexed column.
    list_filter = [("created_at", admin.DateFieldListFilter), "outcome", SurfaceFilter, "stream", AccountFilter]
    search_fields = ["request_id", "key_prefix", "account_label", "requested_model", "upstream_request_id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageRecord]:
        return _scoped(request, super().get_queryset(request))

    # The raw truth: read-only for everyone, superusers included.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        records = _requires("audit.view_usagerecord")
        return [
            path("dashboard/", wrap(records(self.dashboard_view)), name="audit_dashboard"),
            path(
                "export/rollups.csv",
                wrap(_requires("audit.view_usagerollup")(self.export_rollups_view)),
                name="audit_export_rollups",
            ),
            path("export/records.csv", wrap(records(self.export_records_view)), name="audit_export_records"),
            *super().get_urls(),
        ]

    # Views: parse the request, call selectors, render. They need the usage view permission;
    # what a holder sees is narrowed by usage_scope_for (own keys unless view_all_usage).
    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        form = RangeForm(request.GET or None)
        start, end = form.bounds()
        scope = usage_scope_for(request.user)
        granularity = granularity_for(start, end)
        hourly = granularity == Granularity.HOUR
        buckets = buckets_between(start, end, granularity)
        charts = []
        tables = []
        for dimension, label in (("account", "account"), ("developer", "developer"), ("model", "model")):
            b = usage_breakdown(scope=scope, start=start, end=end, dimension=dimension, buckets=buckets)  # type: ignore[arg-type]
            charts.append(line_chart(title=f"Requests by {label}", x=buckets, series=b.requests, hourly=hourly))
            charts.append(line_chart(title=f"Tokens by {label}", x=buckets, series=b.tokens, hourly=hourly))
            tables.append((label, b.totals[:20]))
        health = usage_health(scope=scope, start=start, end=end, buckets=buckets)
        charts.append(
            line_chart(
                title="Errors and failovers (% of requests)",
                x=buckets,
                series={
                    "upstream errors": health.error_rate,
                    "failover / cooldown": health.failover_rate,
                    "429 to client": health.rate_limited,
                },
                unit="%",
                hourly=hourly,
                zero_is_data=bool(health.totals["requests"]),
            )
        )
        charts.append(
            line_chart(title="Time to first byte (ms)", x=buckets, series=health.ttfb, unit="", hourly=hourly)
        )
        query = request.GET.urlencode()
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage dashboard",
            "form": form,
            "start": start,
            "end": end - timedelta(days=1),
            "granularity": "hourly" if hourly else "daily",
            "charts": charts,
            "tables": tables,
            "totals": health.totals,
            "scope_all": scope.all_keys,
            "export_rollups": reverse("admin:audit_export_rollups") + ("?" + query if query else ""),
            "export_records": reverse("admin:audit_export_records") + ("?" + query if query else ""),
            "presets": [
                ("Today", _preset(0)),
                ("Last 7 days", _preset(6)),
                ("Last 30 days", _preset(29)),
                ("Last 90 days", _preset(89)),
            ],
        }
        return TemplateResponse(request, "audit/dashboard.html", context)

    def export_rollups_view(self, request: HttpRequest) -> StreamingHttpResponse:
        start, end = RangeForm(request.GET or None).bounds()
        granularity = request.GET.get("granularity") or granularity_for(start, end)
        if granularity not in Granularity.values:
            granularity = Granularity.DAY
        rows = rollup_rows(scope=usage_scope_for(request.user), start=start, end=end, granularity=granularity)
        return _csv_response(f"usage-rollups-{start:%Y%m%d}-{end:%Y%m%d}.csv", ROLLUP_CSV_COLUMNS, rows)

    def export_records_view(self, request: HttpRequest) -> StreamingHttpResponse:
        start, end = RangeForm(request.GET or None).bounds()
        rows = record_rows(scope=usage_scope_for(request.user), start=start, end=end)
        return _csv_response(f"usage-records-{start:%Y%m%d}-{end:%Y%m%d}.csv", RECORD_CSV_COLUMNS, rows)


def _preset(days_back: int) -> str:
    today = datetime.now(UTC).date()
    return f"?start={today - timedelta(days=days_back)}&end={today}"


def _csv_response(filename: str, header: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> StreamingHttpResponse:
    # Streamed: the rows are written as they are read, never built in memory.
    response = StreamingHttpResponse(_csv_stream(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(UsageRollup)
class UsageRollupAdmin(NoCountAdmin):
    list_display = [
        "bucket",
        "granularity",
        "account_label",
        "key_prefix",
        "model",
        "requests",
        "upstream_errors",
        "input_tokens",
        "output_tokens",
    ]
    list_filter = ["granularity", ("bucket", admin.DateFieldListFilter), AccountFilter]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageRollup]:
        return _scoped(request, super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AdminAction)
class AdminActionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_label", "action", "target_type", "target_label", "changes"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_label", "target_label", "action"]
    date_hierarchy = "created_at"

    # The log is append-only from the admin's point of view: written by services only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(UsageDeadLetter)
class UsageDeadLetterAdmin(admin.ModelAdmin):
    """Records the database refused even after cleaning (audit.services.usage_rows_write).
    Read-only evidence: what came in and why it was refused; the queue moved on without it."""

    list_display = ["created_at", "request_id", "error"]
    search_fields = ["request_id"]
    readonly_fields = ["created_at", "request_id", "error", "payload"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
