"""Admin for accounts and keys: the team's web UI. Classes stay thin: every change goes
through services (accounts.services, accounts.flows.operations), which write the action log."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.crypto import decrypt_json, encrypt_json
from accounts.display import ago_label, count_short, duration_human, limit_meters, until_label
from accounts.flows import FlowError, flow_get, flows_by_provider
from accounts.flows.operations import (
    LiveState,
    account_cooldowns_clear,
    account_refresh,
    account_test,
    accounts_live_state,
)
from accounts.health import AccountHealth, HealthStatus, accounts_health
from accounts.key_usage import KeyUsage, keys_usage
from accounts.models import ClientKey, Team, UpstreamAccount
from accounts.providers import API_KEY_KIND, BoardColumn, provider_choices, providers_all
from accounts.selectors import EffectiveLimits, key_limits_effective, keys_scope_all
from accounts.services import (
    TEAM_FIELDS,
    TeamInUse,
    account_delete,
    account_set_enabled,
    account_update,
    client_key_create,
    client_key_delete,
    client_key_rotate,
    client_key_set_enabled,
    client_key_update,
    credential_set_secret,
    team_create,
    team_delete,
    team_update,
)
from accounts.validators import provider_config_validate
from audit.models import Granularity, UsageRollup


class ModelNamesField(forms.CharField):
    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return sorted({m.strip() for m in text.replace("\n", ",").split(",") if m.strip()})


class AccountForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored key.",
    )
    model_names = ModelNamesField(required=False, help_text="Comma-separated model names.")

    def clean_provider_config(self) -> dict[str, Any]:
        value = self.cleaned_data.get("provider_config")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        provider_config_validate(value)  # its URLs pass the base URL's SSRF check
        return value

    class Meta:
        model = UpstreamAccount
        fields = ["label", "base_url", "api_key", "model_names", "priority", "weight", "enabled", "provider_config"]
        help_texts = {
            "provider_config": "Non-secret per-account settings as JSON, e.g. "
            '{"model_prefix": "team-b"}, {"chat_developer_role": "developer"}; Codex accounts: '
            '{"default_instructions": "..."} (docs/codex.md).',
        }


# --------------------------------------------------------------------------- board actions


@admin.action(description="Test now (1-token request)", permissions=["change"])
def test_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset.select_related("credential"):
        result = account_test(account=account, actor=request.user)
        level = messages.SUCCESS if result.ok else messages.ERROR
        detail = f" — upstream said: {result.upstream_text[:300]}" if result.upstream_text else ""
        modeladmin.message_user(request, f"{account.label}: {result.message}{detail}", level)


@admin.action(description="Refresh credential now", permissions=["change"])
def refresh_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset.select_related("credential"):
        result = account_refresh(account=account, actor=request.user)
        modeladmin.message_user(
            request, f"{account.label}: {result.message}", messages.SUCCESS if result.ok else messages.ERROR
        )


@admin.action(description="Clear cooldowns", permissions=["change"])
def clear_cooldowns(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset:
        cleared = account_cooldowns_clear(account=account, actor=request.user)
        text = "cooldowns are not available (n/a)" if cleared is None else f"{cleared} cooldown(s) cleared"
        modeladmin.message_user(request, f"{account.label}: {text}")


@admin.action(description="Disable selected accounts", permissions=["change"])
def disable_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset:
        account_set_enabled(account=account, enabled=False, actor=request.user)


@admin.action(description="Enable selected accounts", permissions=["change"])
def enable_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset:
        account_set_enabled(account=account, enabled=True, actor=request.user)


# How often the board re-reads itself (accounts/static/accounts/board.js); tests shorten it.
BOARD_REFRESH_SECONDS = 15
_FLOW_SESSION = "account_flow:"
_BOARD_ATTR = "_accounts_board"  # per request: {id: (AccountHealth, LiveState)}


def _board_state(request: HttpRequest) -> dict[int, tuple[AccountHealth, LiveState]]:
    """Health and live state of every account, computed once per board request."""
    cached = getattr(request, _BOARD_ATTR, None)
    if cached is None:
        ids = list(UpstreamAccount.objects.values_list("id", flat=True)[:1000])
        live = accounts_live_state(ids)
        health = accounts_health(ids, live_states=live)
        cached = {pk: (health[pk], live.get(pk) or LiveState()) for pk in health}
        setattr(request, _BOARD_ATTR, cached)
    return cached


class HealthFilter(admin.SimpleListFilter):
    """Filters on what happened (accounts.health), not on the state column."""

    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("failing", "Failing"),
            ("cooling", "Cooling"),
            ("needs_human", "Needs a human"),
            ("degraded", "Degraded"),
            ("healthy", "Healthy"),
            ("idle", "No recent traffic"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        board = _board_state(request)
        if value == "cooling":  # any live cooldown, whatever else is wrong
            ids = [pk for pk, (h, _) in board.items() if h.cooling]
        else:
            ids = [pk for pk, (h, _) in board.items() if h.status == value]
        return queryset.filter(pk__in=ids)


_STATUS_COLORS = {
    HealthStatus.NEEDS_HUMAN: "#b91c1c",
    HealthStatus.FAILING: "#dc2626",
    HealthStatus.COOLING: "#b45309",
    HealthStatus.DEGRADED: "#a16207",
    HealthStatus.IDLE: "#64748b",
    HealthStatus.HEALTHY: "#15803d",
    HealthStatus.DISABLED: "#64748b",
}


def _badge(status: HealthStatus) -> str:
    return format_html(
        '<span class="health-badge" data-status="{}" style="background:{}">{}</span>',
        status.value,
        _STATUS_COLORS[status],
        status.label,
    )


def _cooling_lines(health: AccountHealth) -> str:
    return format_html_join(
        "",
        '<div class="sub cooling" title="{}">cooling until {} ({})</div>',
        ((c.reason, c.until.strftime("%H:%M:%S"), c.scope) for c in health.cooling),
    )


def _at(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _tokens_today(obj: UpstreamAccount) -> int:
    return int(getattr(obj, "in_today", 0) or 0) + int(getattr(obj, "out_today", 0) or 0)


def _provider_field(column: BoardColumn) -> Any:
    def field(obj: UpstreamAccount) -> str:
        return column.value(obj)

    field.__name__ = column.name
    return admin.display(description=column.title)(field)


@admin.register(UpstreamAccount)
class UpstreamAccountAdmin(admin.ModelAdmin):
    form = AccountForm
    change_list_template = "accounts/account_board.html"
    # Fits 1400 px with the sidebar and filters open; expiries, priority, the credential and
    # the recent failed attempts are on each account's page.
    list_display = ["account", "health", "success", "last_success", "last_error_cell", "today", "quota"]
    list_display_links = ["account"]
    list_filter = [HealthFilter, "provider", "enabled", "state"]
    search_fields = ["label", "base_url"]
    readonly_fields = [
        "provider",
        "health_detail",
        "cooling_detail",
        "quota",
        "recent_failures",
        "usage_today",
        "credential_summary",
        "credential_expiry",
        "created_at",
    ]
    actions = [test_accounts, refresh_accounts, clear_cooldowns, disable_accounts, enable_accounts]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UpstreamAccount]:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        daily = UsageRollup.objects.filter(granularity=Granularity.DAY, bucket=today, account_id=OuterRef("pk"))
        # Subqueries keep the board at one SQL query however many accounts it lists.
        queryset = super().get_queryset(request)
        for provider in providers_all():
            if provider.board_annotate is not None:
                queryset = provider.board_annotate(queryset)  # e.g. GitLab's gateway-token expiry
        return (
            queryset.select_related("credential")
            .annotate(
                req_today=Coalesce(Subquery(daily.values("account_id").annotate(s=Sum("requests")).values("s")[:1]), 0),
                in_today=Coalesce(
                    Subquery(daily.values("account_id").annotate(s=Sum("input_tokens")).values("s")[:1]), 0
                ),
                out_today=Coalesce(
                    Subquery(daily.values("account_id").annotate(s=Sum("output_tokens")).values("s")[:1]), 0
                ),
            )
        )

    def get_ordering(self, request: HttpRequest) -> Any:
        if not getattr(request, "_board_sort", False):
            return ["label"]
        # Worst first: the severity comes from accounts.health (computed in Python).
        ranks = [When(pk=pk, then=Value(h.status.severity)) for pk, (h, _) in _board_state(request).items()]
        return [Case(*ranks, default=Value(99), output_field=IntegerField()).asc(), "-priority", "label"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        request._board_sort = True  # type: ignore[attr-defined]
        every = getattr(settings, "PROXY_BOARD_REFRESH_SECONDS", BOARD_REFRESH_SECONDS)
        extra = {**(extra_context or {}), "refresh_seconds": every}
        return super().changelist_view(request, extra)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        board = _board_state(request)
        for obj in changelist.result_list:
            if obj.pk in board:
                obj._board = board[obj.pk]
        return changelist

    def _board(self, obj: UpstreamAccount) -> tuple[AccountHealth, LiveState]:
        # Cells get no request: the board's state rides on each object (computed once per page).
        cached = getattr(obj, "_board", None)
        if cached is None:
            live = accounts_live_state([obj.pk])
            cached = (accounts_health([obj.pk], live_states=live)[obj.pk], live.get(obj.pk) or LiveState())
            obj._board = cached  # type: ignore[attr-defined]
        return cached  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- board cells

    @admin.display(description="account", ordering="label")
    def account(self, obj: UpstreamAccount) -> str:
        cred = getattr(obj, "credential", None)
        kind = cred.get_kind_display() if cred else "no credential"
        return format_html('{}<div class="sub">{} · {}</div>', obj.label, obj.get_provider_display(), kind)

    @admin.display(description="health")
    def health(self, obj: UpstreamAccount) -> str:
        h, _ = self._board(obj)
        parts = [_badge(h.status)]
        if h.needs_human:
            parts.append(format_html('<div class="sub">{}</div>', h.needs_human))
        parts.append(_cooling_lines(h))
        if h.live_state_error:
            parts.append(format_html('<div class="sub" title="{}">cooldowns: n/a</div>', h.live_state_error))
        return format_html_join("", "{}", ((p,) for p in parts))

    @admin.display(description="success (1 h)")
    def success(self, obj: UpstreamAccount) -> str:
        h, _ = self._board(obj)
        if not h.attempts:
            return mark_safe('<span class="sub">no attempts</span>')
        streak = (
            format_html('<div class="sub bad">{} failed in a row</div>', h.consecutive_failures)
            if h.consecutive_failures
            else ""
        )
        return format_html("{} % of {}{}", f"{100 * (h.success_rate or 0):.0f}", h.attempts, streak)

    @admin.display(description="last success")
    def last_success(self, obj: UpstreamAccount) -> str:
        h, _ = self._board(obj)
        title = h.last_success_at.strftime("%Y-%m-%d %H:%M:%S UTC") if h.last_success_at else ""
        return format_html('<span title="{}">{}</span>', title, ago_label(h.last_success_at))

    @admin.display(description="last error")
    def last_error_cell(self, obj: UpstreamAccount) -> str:
        h, _ = self._board(obj)
        if not h.last_error:
            return "—"
        # The full upstream text on hover; the cell stays short.
        return format_html(
            '<div class="last-error" title="{}"><span class="sub">{}</span> {}</div>',
            h.last_error,
            ago_label(h.last_error_at),
            h.last_error[:90],
        )

    @admin.display(description="today", ordering="req_today")
    def today(self, obj: UpstreamAccount) -> str:
        requests = count_short(getattr(obj, "req_today", 0) or 0)
        return format_html('{} req<div class="sub">{} tok</div>', requests, count_short(_tokens_today(obj)))

    @admin.display(description="quota")
    def quota(self, obj: UpstreamAccount) -> str:
        _, live = self._board(obj)
        if live.quota is None or live.error:
            return "n/a"
        if not live.quota:
            return "—"
        return format_html_join(
            "",
            '<div title="resets {}">{}: {} %</div>',
            (
                (
                    datetime.fromtimestamp(q.resets_at, UTC).strftime("%m-%d %H:%M") if q.resets_at else "?",
                    q.family,
                    f"{q.used_percent:.0f}",
                )
                for q in live.quota
            ),
        )

    # ----------------------------------------------------------------- detail page

    @admin.display(description="health")
    def health_detail(self, obj: UpstreamAccount) -> str:
        h, _ = self._board(obj)
        rate = f"{100 * h.success_rate:.0f} % of {h.attempts} attempts" if h.success_rate is not None else "no attempts"
        error = format_html("{} — {}", ago_label(h.last_error_at), h.last_error) if h.last_error else "none"
        rows = [
            ("status", _badge(h.status)),
            ("success in the last hour", rate),
            ("failed in a row", str(h.consecutive_failures)),
            ("last success", ago_label(h.last_success_at)),
            ("last error", error),
        ]
        if h.needs_human:
            rows.insert(1, ("needs a human", h.needs_human))
        return format_html(
            '<table class="health-table">{}</table>', format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        )

    @admin.display(description="cooldowns")
    def cooling_detail(self, obj: UpstreamAccount) -> str:
        h, live = self._board(obj)
        if live.error:
            return format_html('<span title="{}">n/a (state store unavailable)</span>', live.error)
        if not h.cooling:
            return "none"
        now = timezone.now()
        return format_html_join(
            "",
            "<div>cooling until {} ({}, {} left): {}</div>",
            (
                (
                    c.until.strftime("%Y-%m-%d %H:%M:%S"),
                    c.scope,
                    duration_human((c.until - now).total_seconds()),
                    c.reason,
                )
                for c in h.cooling
            ),
        )

    @admin.display(description="recent failed attempts")
    def recent_failures(self, obj: UpstreamAccount) -> str:
        h, _ = self._board(obj)
        if not h.recent_failures:
            return "none in the last hour"
        head = mark_safe("<tr><th>when</th><th>model</th><th>status</th><th>error</th><th>upstream said</th></tr>")
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (f.at.strftime("%Y-%m-%d %H:%M:%S"), f.model, f.status or "—", f.code or "—", f.message or "—")
                for f in h.recent_failures
            ),
        )
        return format_html('<table class="failures">{}{}</table>', head, body)

    @admin.display(description="today")
    def usage_today(self, obj: UpstreamAccount) -> str:
        requests = int(getattr(obj, "req_today", 0) or 0)
        return f"{requests} requests, {_tokens_today(obj)} tokens (from the rollups: up to a minute behind)"

    @admin.display(description="token expires")
    def credential_expiry(self, obj: UpstreamAccount) -> str:
        cred = getattr(obj, "credential", None)
        return until_label(cred.expires_at) if cred else "—"

    def get_readonly_fields(self, request: HttpRequest, obj: UpstreamAccount | None = None) -> Any:
        """The account page's fields plus each provider's own (e.g. GitLab's gateway token)."""
        extra = [c.name for p in providers_all() for c in p.board_columns]
        return [*super().get_readonly_fields(request, obj), *extra]

    def __getattr__(self, name: str) -> Any:
        # A provider's own read-only field (accounts.providers.BoardColumn), found by name the
        # way the admin finds its display methods.
        for provider in providers_all():
            for column in provider.board_columns:
                if column.name == name:
                    return _provider_field(column)
        raise AttributeError(name)

    @admin.display(description="credential")
    def credential_summary(self, obj: UpstreamAccount) -> str:
        cred = getattr(obj, "credential", None)
        # Masked: the kind only, never any part of the secret.
        return f"{cred.get_kind_display()} (stored encrypted)" if cred else "none"

    def get_fields(self, request: HttpRequest, obj: UpstreamAccount | None = None) -> Any:
        fields = list(super().get_fields(request, obj))
        cred = getattr(obj, "credential", None) if obj is not None else None
        if cred is None or cred.kind != API_KEY_KIND:
            # Sign-in credentials (OAuth, ChatGPT, PAT) are replaced by signing in again through
            # the guided flow; an "API key" typed here would overwrite them with the wrong kind.
            fields = [f for f in fields if f != "api_key"]
        return fields

    def save_model(self, request: HttpRequest, obj: UpstreamAccount, form: Any, change: bool) -> None:
        data = form.cleaned_data
        keys = ("label", "base_url", "model_names", "priority", "weight", "enabled", "provider_config")
        fields = {k: data[k] for k in keys if k in data}
        original = UpstreamAccount.objects.select_related("credential").get(pk=obj.pk)
        account_update(account=original, actor=request.user, **fields)
        if data.get("api_key"):
            credential_set_secret(account=original, secret={"api_key": data["api_key"]}, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: UpstreamAccount) -> None:
        account_delete(account=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
        for account in queryset:
            account_delete(account=account, actor=request.user)

    # ----------------------------------------------------------------- guided add flows

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        # Accounts are added through the guided flows only: they verify the credential first.
        if not self.has_add_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:accounts_flow_choose"))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("guided/", wrap(self.flow_choose_view), name="accounts_flow_choose"),
            path("guided/<str:flow_key>/", wrap(self.flow_step_view), name="accounts_flow_step"),
            *super().get_urls(),
        ]

    def flow_choose_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        labels = dict(provider_choices())
        providers = [
            (labels.get(kind, kind), flows) for kind, flows in flows_by_provider().items()
        ]
        context = {**self.admin_site.each_context(request), "title": "Add an account", "providers": providers}
        return TemplateResponse(request, "accounts/flow_choose.html", context)

    def flow_step_view(self, request: HttpRequest, flow_key: str) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        flow_cls = flow_get(flow_key)
        if flow_cls is None:
            raise Http404
        flow = flow_cls()
        session_key = _FLOW_SESSION + flow_key
        # The state may hold a secret typed in an earlier step: encrypted in the session.
        stored = request.session.get(session_key)
        state: dict[str, Any] = decrypt_json(stored) if stored and request.method == "POST" else {}
        index = min(int(state.get("_step", 0)), len(flow.steps) - 1)
        if request.method == "POST" and request.POST.get("_back") and index > 0:
            index -= 1
            state["_step"] = index
            request.session[session_key] = encrypt_json(state)
            form = flow.steps[index].form_class(
                initial=flow.initial(flow.steps[index], state), **flow.form_kwargs(flow.steps[index], state)
            )
            return self._flow_render(request, flow, index, form, None, state)
        step = flow.steps[index]
        error: FlowError | None = None
        if request.method == "POST":
            form = step.form_class(request.POST, **flow.form_kwargs(step, state))
            if form.is_valid():
                try:
                    flow.process(step, form.cleaned_data, state)
                except FlowError as exc:
                    error = exc
                else:
                    if index + 1 < len(flow.steps):
                        state["_step"] = index + 1
                        request.session[session_key] = encrypt_json(state)
                        nxt = flow.steps[index + 1]
                        form = nxt.form_class(initial=flow.initial(nxt, state), **flow.form_kwargs(nxt, state))
                        return self._flow_render(request, flow, index + 1, form, None, state)
                    try:
                        account = flow.finish(state, actor=request.user)
                    except FlowError as exc:
                        error = exc
                    else:
                        request.session.pop(session_key, None)
                        self.message_user(request, f"Account '{account.label}' added.", messages.SUCCESS)
                        return HttpResponseRedirect(reverse("admin:accounts_upstreamaccount_changelist"))
                if error is not None:
                    # A finish() that says "not yet" (device login pending) may have noted
                    # something for the next try (poll interval, a used-up login): keep it.
                    request.session[session_key] = encrypt_json(state)
                    if error.field and error.field in form.fields:
                        form.add_error(error.field, error.message)
        else:
            request.session.pop(session_key, None)
            state = {"_step": 0}
            request.session[session_key] = encrypt_json(state)
            form = step.form_class(initial=flow.initial(step, state), **flow.form_kwargs(step, state))
        return self._flow_render(request, flow, index, form, error, state)

    def _flow_render(
        self,
        request: HttpRequest,
        flow: Any,
        index: int,
        form: forms.Form,
        error: FlowError | None,
        state: dict[str, Any] | None = None,
    ) -> HttpResponse:
        step = flow.steps[index]
        context = {
            **flow.context(step, state or {}),
            **self.admin_site.each_context(request),
            "title": f"Add an account: {flow.title}",
            "flow": flow,
            "step": flow.steps[index],
            "steps": [(i, s, i == index, i < index) for i, s in enumerate(flow.steps)],
            "index": index,
            "form": form,
            "error": error if error is None or not error.field else None,
            "field_error_detail": error.detail if error is not None else "",
            "is_last": index == len(flow.steps) - 1,
        }
        return TemplateResponse(request, step.template or "accounts/flow_step.html", context)


# --------------------------------------------------------------------------- client keys


class ClientKeyForm(forms.ModelForm):
    allowed_models = ModelNamesField(required=False, help_text="Comma-separated; empty = every model.")

    class Meta:
        model = ClientKey
        fields = [
            "name",
            "owner",
            "owner_label",
            "team",
            "enabled",
            "expires_at",
            "allowed_models",
            "requests_per_minute",
            "tokens_per_day",
            "budget_tokens",
            "budget_period",
        ]


def _limits_label(rpm: int | None, tpd: int | None, budgets: Iterable[tuple[int, str]]) -> str:
    parts = []
    if rpm is not None:
        parts.append(f"{rpm}/min")
    if tpd is not None:
        parts.append(f"{tpd} tok/day")
    parts.extend(f"{tokens} tok/{period}" for tokens, period in budgets)
    return ", ".join(parts) or "—"


def _effective_label(limits: EffectiveLimits) -> str:
    return _limits_label(limits.requests_per_minute, limits.tokens_per_day, limits.budgets)


@admin.action(description="Revoke (disable) selected keys", permissions=["change"])
def revoke_keys(modeladmin: Any, request: HttpRequest, queryset: QuerySet[ClientKey]) -> None:
    for key in queryset:
        client_key_set_enabled(key=key, enabled=False, actor=request.user)


_KEY_FIELDS = (
    "name",
    "owner_label",
    "team",
    "enabled",
    "expires_at",
    "allowed_models",
    "requests_per_minute",
    "tokens_per_day",
    "budget_tokens",
    "budget_period",
)


@admin.register(ClientKey)
class ClientKeyAdmin(admin.ModelAdmin):
    form = ClientKeyForm
    change_form_template = "accounts/key_change_form.html"
    list_display = ["key", "holder", "status", "usage", "last_used", "today"]
    list_display_links = ["key"]
    # Only teams of the keys this person may see (the stock filter lists every team).
    list_filter = ["enabled", ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "owner_label", "prefix", "owner__username"]
    readonly_fields = ["prefix", "created_at", "rotated_at", "effective_limits", "usage", "last_used", "today"]
    actions = [revoke_keys]
    fieldsets = [
        (None, {"fields": ["name", "owner", "owner_label", "team", "enabled", "expires_at", "allowed_models"]}),
        (
            "Limits (empty = unlimited or the team's; enforced atomically across every proxy process)",
            {
                "fields": ["requests_per_minute", "tokens_per_day", "budget_tokens", "budget_period"],
                "description": "A key in a team gets the team's limits and models; its own values can only "
                "narrow them (the stricter one applies).",
            },
        ),
        ("Record", {"fields": ["prefix", "created_at", "rotated_at", "effective_limits"]}),
        ("Usage", {"fields": ["usage", "last_used", "today"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClientKey]:
        qs = super().get_queryset(request).select_related("team", "owner")
        # Lists, pages, actions, history and filters all go through this: a staff member
        # without view_all_keys never reaches another developer's key.
        return qs if keys_scope_all(request.user) else qs.filter(owner=request.user)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        usage = keys_usage(list(changelist.result_list))  # one read for the whole page
        for obj in changelist.result_list:
            obj._usage = usage.get(obj.pk)
        return changelist

    def _usage(self, obj: ClientKey) -> KeyUsage:
        cached = getattr(obj, "_usage", None)
        if cached is None:
            cached = keys_usage([obj])[obj.pk]
            obj._usage = cached  # type: ignore[attr-defined]
        return cached  # type: ignore[no-any-return]

    @admin.display(description="key", ordering="name")
    def key(self, obj: ClientKey) -> str:
        return format_html('{}<div class="sub"><code>{}…</code></div>', obj.name, obj.prefix)

    @admin.display(description="holder / team", ordering="owner_label")
    def holder(self, obj: ClientKey) -> str:
        who = obj.owner_label or (obj.owner.get_username() if obj.owner else "—")
        return format_html('{}<div class="sub">{}</div>', who, obj.team.name if obj.team else "no team")

    @admin.display(description="status", ordering="enabled")
    def status(self, obj: ClientKey) -> str:
        if not obj.enabled:
            return mark_safe('<span class="sub bad">revoked</span>')
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return format_html('<span class="sub bad">expired {}</span>', obj.expires_at.strftime("%Y-%m-%d"))
        expiry = until_label(obj.expires_at) if obj.expires_at else "never expires"
        return format_html('active<div class="sub">{}</div>', expiry)

    @admin.display(description="usage of limits (with the team's)")
    def usage(self, obj: ClientKey) -> str:
        if obj.pk is None:
            return "—"
        return limit_meters(self._usage(obj).limits)

    @admin.display(description="last used")
    def last_used(self, obj: ClientKey) -> str:
        if obj.pk is None:
            return "—"
        at = self._usage(obj).last_used_at
        return format_html('<span title="{}">{}</span>', at.isoformat() if at else "", ago_label(at))

    @admin.display(description="today")
    def today(self, obj: ClientKey) -> str:
        if obj.pk is None:
            return "—"
        u = self._usage(obj)
        return format_html(
            '{} tok<div class="sub">{} req</div>', count_short(u.tokens_today), count_short(u.requests_today)
        )

    @admin.display(description="effective limits and models")
    def effective_limits(self, obj: ClientKey) -> str:
        if obj.pk is None:
            return "—"
        limits = key_limits_effective(obj)
        return f"{_effective_label(limits)}; models: {limits.models_label()}"

    def save_model(self, request: HttpRequest, obj: ClientKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created, raw = client_key_create(
                owner_id=data["owner"].pk if data.get("owner") else None,
                team_id=data["team"].pk if data.get("team") else None,
                actor=request.user,
                **{k: data[k] for k in _KEY_FIELDS if k not in ("enabled", "team")},
            )
            obj.pk = created.pk
            # Shown once on the next page, never stored (not even in the messages cookie).
            request._new_raw_key = raw  # type: ignore[attr-defined]
            return
        original = ClientKey.objects.get(pk=obj.pk)
        fields = {k: data[k] for k in _KEY_FIELDS if k != "team"}
        fields["owner_id"] = data["owner"].pk if data.get("owner") else None
        fields["team_id"] = data["team"].pk if data.get("team") else None
        client_key_update(key=original, actor=request.user, **fields)

    def delete_model(self, request: HttpRequest, obj: ClientKey) -> None:
        client_key_delete(key=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ClientKey]) -> None:
        for key in queryset:
            client_key_delete(key=key, actor=request.user)

    def response_add(self, request: HttpRequest, obj: ClientKey, post_url_continue: str | None = None) -> HttpResponse:
        raw = getattr(request, "_new_raw_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_once(request, get_object_or_404(ClientKey, pk=obj.pk), raw, "Key created")

    def _show_once(self, request: HttpRequest, key: ClientKey, raw: str, title: str) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "title": title, "key": key, "raw_key": raw}
        response = TemplateResponse(request, "accounts/key_created.html", context)
        response["Cache-Control"] = "no-store"  # the page holds the only copy of the key
        return response

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:key_id>/rotate/", wrap(self.rotate_view), name="accounts_clientkey_rotate"),
            *super().get_urls(),
        ]

    def rotate_view(self, request: HttpRequest, key_id: int) -> HttpResponse:
        """POST: a new secret for the same key record (limits, team and history stay)."""
        key = get_object_or_404(self.get_queryset(request), pk=key_id)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        raw = client_key_rotate(key=key, actor=request.user)
        return self._show_once(request, key, raw, "Key rotated")


# --------------------------------------------------------------------------- teams


class TeamForm(forms.ModelForm):
    allowed_models = ModelNamesField(required=False, help_text="Comma-separated; empty = every model.")

    class Meta:
        model = Team
        fields = ["members", *TEAM_FIELDS]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    list_display = ["name", "member_count", "key_count", "models", "limits", "member_key_limit"]
    search_fields = ["name"]
    filter_horizontal = ["members"]
    fieldsets = [
        (None, {"fields": ["name", "members", "allowed_models"]}),
        (
            "Limits every key of the team gets (empty = none; a key's own value can only be stricter)",
            {"fields": ["requests_per_minute", "tokens_per_day", "budget_tokens", "budget_period"]},
        ),
        ("Developer self-service", {"fields": ["member_key_limit"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        from django.db.models import Count

        return (
            super()
            .get_queryset(request)
            .annotate(n_members=Count("members", distinct=True), n_keys=Count("keys", distinct=True))
        )

    @admin.display(description="members", ordering="n_members")
    def member_count(self, obj: Team) -> int:
        return int(getattr(obj, "n_members", 0))

    @admin.display(description="keys", ordering="n_keys")
    def key_count(self, obj: Team) -> int:
        return int(getattr(obj, "n_keys", 0))

    @admin.display(description="models")
    def models(self, obj: Team) -> str:
        return ", ".join(obj.allowed_models or ()) or "every model"

    @admin.display(description="limits per key")
    def limits(self, obj: Team) -> str:
        budgets = [(obj.budget_tokens, obj.budget_period)] if obj.budget_tokens is not None else []
        return _limits_label(obj.requests_per_minute, obj.tokens_per_day, budgets)

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        data = form.cleaned_data
        fields = {k: data[k] for k in TEAM_FIELDS if k in data}
        members = [u.pk for u in data.get("members", [])]
        if change:
            team_update(team=Team.objects.get(pk=obj.pk), member_ids=members, actor=request.user, **fields)
        else:
            obj.pk = team_create(member_ids=members, actor=request.user, **fields).pk

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Members were set by the service (and logged); the stock m2m save would redo it.
        pass

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        try:
            team_delete(team=obj, actor=request.user)
        except TeamInUse as exc:
            self.message_user(request, str(exc), messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            self.delete_model(request, team)
