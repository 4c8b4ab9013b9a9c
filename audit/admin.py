"""Usage audit in the admin: raw records, rollups, the action log, dashboards and CSV exports.

Every page is staff-only (admin_view) and CSRF-protected by Django's middleware. A staff
member without `audit.view_all_usage` sees only the usage of keys they own.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from accounts.models import ClientKey, UpstreamAccount
from audit.dashboard import DashboardForm, RangeForm, dashboard_context
from audit.models import AdminAction, Granularity, UsageDeadLetter, UsageRecord, UsageRollup
from audit.selectors import (
    RECORD_CSV_COLUMNS,
    ROLLUP_CSV_COLUMNS,
    UsageFilter,
    granularity_for,
    key_people,
    record_rows,
    rollup_rows,
    usage_scope_for,
)
from pricing.cost import usd_format

# The admin index links to the dashboards (template extends Django's own index).
admin.site.index_template = "audit/admin_index.html"
admin.site.site_header = "Team LLM proxy"
admin.site.site_title = "Team LLM proxy"
admin.site.index_title = "Accounts, keys and usage"

__all__ = ["RangeForm"]  # kept importable from here


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


class _KeysFilter(admin.SimpleListFilter):
    """Narrows records to a set of keys (indexed client_key_id), chosen from the keys table."""

    def keys_for(self, value: str) -> QuerySet[ClientKey]:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(client_key_id__in=list(self.keys_for(value).values_list("id", flat=True)))


def _visible_keys(request: HttpRequest) -> dict[int, Any]:
    """Keys whose names this user may see in filter choices (their own unless view_all_usage)."""
    scope = usage_scope_for(request.user)
    return key_people(None if scope.all_keys else scope.key_ids)


class TeamFilter(_KeysFilter):
    title = "team"
    parameter_name = "team"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        # Only the teams of keys this user may see (a staff member scoped to their own keys
        # must not learn other teams' names here).
        visible = _visible_keys(request).values()
        teams = {(p.team_id, p.team) for p in visible if p.team_id}
        return [(str(pk), name) for pk, name in sorted(teams, key=lambda t: t[1])]

    def keys_for(self, value: str) -> QuerySet[ClientKey]:
        return ClientKey.objects.filter(team_id=int(value)) if value.isdigit() else ClientKey.objects.none()


class DeveloperFilter(_KeysFilter):
    """A developer is a key's owner (owner label, else username, else the key's name)."""

    title = "developer"
    parameter_name = "developer"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(n, n) for n in sorted({p.developer for p in _visible_keys(request).values()})]

    def keys_for(self, value: str) -> QuerySet[ClientKey]:
        from audit.selectors import _developer_q

        return ClientKey.objects.filter(_developer_q(value))


class KeyFilter(_KeysFilter):
    title = "key"
    parameter_name = "key"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        people = sorted(_visible_keys(request).items(), key=lambda kv: kv[1].name)
        return [(str(k), f"{p.name} ({p.developer})") for k, p in people]

    def keys_for(self, value: str) -> QuerySet[ClientKey]:
        return ClientKey.objects.filter(id=int(value)) if value.isdigit() else ClientKey.objects.none()


class ModelFilter(admin.SimpleListFilter):
    """Requested model; choices from the accounts' and catalog's model names (small tables)."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names: set[str] = set()
        for models in UpstreamAccount.objects.values_list("model_names", flat=True):
            names.update(m for m in models or () if isinstance(m, str))
        if self.value():  # a name no account lists (an alias, a removed model) still filters
            names.add(str(self.value()))
        return [(n, n) for n in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(requested_model=value) if value else queryset


def _attempts_summary(log: Any) -> str:
    """'acct-A 429 → acct-B 200' for the records list."""
    if not isinstance(log, list) or not log:
        return "-"
    parts = []
    for a in log:
        if isinstance(a, dict):
            parts.append(f"{a.get('account', '?')} {a.get('status', '…')}")
    return " → ".join(parts)


def attempts_table(log: Any) -> SafeString:
    """Every upstream attempt as a small table (never raw JSON)."""
    if not isinstance(log, list) or not log:
        return mark_safe("no upstream attempt")
    known = ("account", "model", "status", "code", "ms")
    rows = []
    for i, a in enumerate(log, 1):
        a = a if isinstance(a, dict) else {"detail": a}
        extra = ", ".join(f"{k}: {v}" for k, v in a.items() if k not in known)
        cells = [str(i), *(str(a.get(k, "")) for k in known), extra]
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("#", "account", "upstream model", "status", "error", "ms", "other"))
    return mark_safe(f'<table class="attempts"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


@admin.register(UsageRecord)
class UsageRecordAdmin(NoCountAdmin):
    # Compact columns so the list stays readable at 800 px; everything else is on the record.
    list_display = [
        "when",
        "developer_team",
        "account_name",
        "model_name",
        "result",
        "tokens",
        "cost",
        "ttfb",
        "attempts_list",
    ]
    actions = None  # records are read-only: no checkbox column, no bulk action
    list_select_related = ["client_key", "client_key__owner", "client_key__team"]
    # The default ordering (-created_at, then -pk added by the admin) walks the created_at
    # index backwards; every filter here is either fixed choices or an indexed column (the
    # key filters become client_key_id IN (...) from the small keys table).
    list_filter = [
        ("created_at", admin.DateFieldListFilter),
        "outcome",
        TeamFilter,
        DeveloperFilter,
        KeyFilter,
        AccountFilter,
        ModelFilter,
        SurfaceFilter,
        "stream",
    ]
    search_fields = ["request_id", "key_prefix", "account_label", "requested_model", "upstream_request_id"]
    fieldsets = [
        (None, {"fields": ["created_at", "request_id", "developer", "key_name", "team", "key_prefix"]}),
        ("Request", {"fields": ["surface", "requested_model", "served_model", "stream", "account_label"]}),
        ("Outcome", {"fields": ["outcome", "status_code", "error_code", "error_message", "upstream_request_id"]}),
        ("Upstream attempts", {"fields": ["attempts", "attempts_detail"]}),
        (
            "Usage and cost",
            {
                "fields": [
                    "input_tokens",
                    "cached_tokens",
                    "cache_creation_tokens",
                    "output_tokens",
                    "reasoning_tokens",
                    "usage_estimated",
                    "cost",
                    "price_source",
                ]
            },
        ),
        ("Timing", {"fields": ["ttfb_ms", "duration_ms"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(f) for _, opts in self.fieldsets for f in opts["fields"]]

    @admin.display(description="time (UTC)", ordering="created_at")
    def when(self, obj: UsageRecord) -> SafeString:
        at = obj.created_at.astimezone(UTC)
        return format_html("{}<br>{}", f"{at:%Y-%m-%d}", f"{at:%H:%M:%S}")

    @admin.display(description="developer / team")
    def developer_team(self, obj: UsageRecord) -> SafeString:
        team = self.team(obj)
        return format_html('{}<div class="sub">{}</div>', self.developer(obj), "" if team == "-" else team)

    @admin.display(description="account", ordering="account_label")
    def account_name(self, obj: UsageRecord) -> str:
        return obj.account_label or "-"

    @admin.display(description="model")
    def model_name(self, obj: UsageRecord) -> str:
        return obj.requested_model or "-"

    @admin.display(description="TTFB ms")
    def ttfb(self, obj: UsageRecord) -> str:
        return "-" if obj.ttfb_ms is None else str(obj.ttfb_ms)

    @admin.display(description="outcome")
    def result(self, obj: UsageRecord) -> str:
        return f"{obj.get_outcome_display()} ({obj.status_code})"

    @admin.display(description="tokens in/out")
    def tokens(self, obj: UsageRecord) -> str:
        return f"{obj.input_tokens} / {obj.output_tokens}"

    @admin.display(description="developer")
    def developer(self, obj: UsageRecord) -> str:
        key = obj.client_key if obj.client_key_id else None
        if key is None:
            return obj.key_prefix or "-"
        return key.owner_label or (key.owner.get_username() if key.owner else "") or key.name

    @admin.display(description="key")
    def key_name(self, obj: UsageRecord) -> str:
        key = obj.client_key if obj.client_key_id else None
        return key.name if key is not None else (obj.key_prefix or "-")

    @admin.display(description="team")
    def team(self, obj: UsageRecord) -> str:
        key = obj.client_key if obj.client_key_id else None
        return key.team.name if key is not None and key.team is not None else "-"

    @admin.display(description="cost")
    def cost(self, obj: UsageRecord) -> str:
        return "unpriced" if obj.cost_nanousd is None else usd_format(obj.cost_nanousd)

    @admin.display(description="attempts")
    def attempts_list(self, obj: UsageRecord) -> str:
        # One attempt is the norm: only failovers spell out who answered what.
        return _attempts_summary(obj.attempt_log) if obj.attempts > 1 else str(obj.attempts)

    @admin.display(description="every attempt")
    def attempts_detail(self, obj: UsageRecord) -> SafeString:
        return attempts_table(obj.attempt_log)

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
        scope = usage_scope_for(request.user)
        form = DashboardForm(request.GET or None, scope=scope)
        start, end = form.bounds()
        flt = form.usage_filter()
        query = request.GET.urlencode()
        context = {
            **self.admin_site.each_context(request),
            **dashboard_context(scope=scope, start=start, end=end, flt=flt),
            "title": "Usage dashboard",
            "form": form,
            "start": start,
            "end": end - timedelta(days=1),
            "scope_all": scope.all_keys,
            "export_rollups": reverse("admin:audit_export_rollups") + ("?" + query if query else ""),
            "export_records": reverse("admin:audit_export_records") + ("?" + query if query else ""),
            "presets": [
                ("Today", _preset(0, request)),
                ("Last 7 days", _preset(6, request)),
                ("Last 30 days", _preset(29, request)),
                ("Last 90 days", _preset(89, request)),
            ],
        }
        return TemplateResponse(request, "audit/dashboard.html", context)

    def _export_filter(self, request: HttpRequest) -> UsageFilter:
        return DashboardForm(request.GET or None, scope=usage_scope_for(request.user)).usage_filter()

    def export_rollups_view(self, request: HttpRequest) -> StreamingHttpResponse:
        start, end = RangeForm(request.GET or None).bounds()
        granularity = request.GET.get("granularity") or granularity_for(start, end)
        if granularity not in Granularity.values:
            granularity = Granularity.DAY
        scope, flt = usage_scope_for(request.user), self._export_filter(request)
        rows = rollup_rows(scope=scope, start=start, end=end, granularity=granularity, flt=flt)
        return _csv_response(f"usage-rollups-{start:%Y%m%d}-{end:%Y%m%d}.csv", ROLLUP_CSV_COLUMNS, rows)

    def export_records_view(self, request: HttpRequest) -> StreamingHttpResponse:
        start, end = RangeForm(request.GET or None).bounds()
        scope, flt = usage_scope_for(request.user), self._export_filter(request)
        rows = record_rows(scope=scope, start=start, end=end, flt=flt)
        return _csv_response(f"usage-records-{start:%Y%m%d}-{end:%Y%m%d}.csv", RECORD_CSV_COLUMNS, rows)


def _preset(days_back: int, request: HttpRequest) -> str:
    """A date preset that keeps the other filters."""
    today = datetime.now(UTC).date()
    query = request.GET.copy()
    query["start"], query["end"] = str(today - timedelta(days=days_back)), str(today)
    return "?" + query.urlencode()


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


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services only (logs, alerts): the admin lists and shows them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AdminAction)
class AdminActionAdmin(ReadOnlyAdmin):
    """The log is append-only from the admin's point of view: written by services only."""

    list_display = ["created_at", "actor_label", "action", "target_type", "target_label", "changes"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_label", "target_label", "action"]
    date_hierarchy = "created_at"


@admin.register(UsageDeadLetter)
class UsageDeadLetterAdmin(ReadOnlyAdmin):
    """Records the database refused even after cleaning (audit.services.usage_rows_write).
    Read-only evidence: what came in and why it was refused; the queue moved on without it."""

    list_display = ["created_at", "request_id", "error"]
    search_fields = ["request_id"]
    readonly_fields = ["created_at", "request_id", "error", "payload"]
