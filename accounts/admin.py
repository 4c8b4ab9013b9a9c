"""Admin for accounts and keys: the team's web UI. Classes stay thin: every change goes
through services (accounts.services, accounts.flows.operations), which write the action log."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Min, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.crypto import decrypt_json, encrypt_json
from accounts.flows import FlowError, flow_get, flows_by_provider
from accounts.flows.operations import (
    LiveState,
    account_cooldowns_clear,
    account_refresh,
    account_test,
    accounts_live_state,
)
from accounts.models import ClientKey, GatewayToken, ProviderKind, Team, UpstreamAccount
from accounts.selectors import EffectiveLimits, key_limits_effective
from accounts.services import (
    TeamInUse,
    account_set_enabled,
    account_update,
    client_key_create,
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
            "provider_config": 'Non-secret per-account settings as JSON, e.g. {"strip_hosted_tools": true} '
            "(needed for Codex CLI on a Chat or Claude upstream: it always offers web_search), "
            '{"model_prefix": "team-b"}, {"chat_developer_role": "developer"}.',
        }


# --------------------------------------------------------------------------- board actions


@admin.action(description="Test now (1-token request)")
def test_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset.select_related("credential"):
        result = account_test(account=account, actor=request.user)
        level = messages.SUCCESS if result.ok else messages.ERROR
        detail = f" — upstream said: {result.upstream_text[:300]}" if result.upstream_text else ""
        modeladmin.message_user(request, f"{account.label}: {result.message}{detail}", level)


@admin.action(description="Refresh credential now")
def refresh_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset.select_related("credential"):
        result = account_refresh(account=account, actor=request.user)
        modeladmin.message_user(
            request, f"{account.label}: {result.message}", messages.SUCCESS if result.ok else messages.ERROR
        )


@admin.action(description="Clear cooldowns")
def clear_cooldowns(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset:
        cleared = account_cooldowns_clear(account=account, actor=request.user)
        text = "cooldowns are not available (n/a)" if cleared is None else f"{cleared} cooldown(s) cleared"
        modeladmin.message_user(request, f"{account.label}: {text}")


@admin.action(description="Disable selected accounts")
def disable_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset:
        account_set_enabled(account=account, enabled=False, actor=request.user)


@admin.action(description="Enable selected accounts")
def enable_accounts(modeladmin: Any, request: HttpRequest, queryset: QuerySet[UpstreamAccount]) -> None:
    for account in queryset:
        account_set_enabled(account=account, enabled=True, actor=request.user)


# Live state for the accounts on the page, read once per changelist request (not per cell).
_live: contextvars.ContextVar[dict[int, LiveState] | None] = contextvars.ContextVar("board_live", default=None)
_FLOW_SESSION = "account_flow:"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _until(value: datetime | None) -> str:
    if value is None:
        return "—"
    delta = (value - timezone.now()).total_seconds()
    when = value.strftime("%Y-%m-%d %H:%M")
    return f"{when} (expired)" if delta <= 0 else f"{when} (in {_duration(delta)})"


@admin.register(UpstreamAccount)
class UpstreamAccountAdmin(admin.ModelAdmin):
    form = AccountForm
    change_list_template = "accounts/account_board.html"
    list_display = [
        "label",
        "provider",
        "credential_kind",
        "state_badge",
        "enabled",
        "cooldowns",
        "quota",
        "credential_expiry",
        "gateway_expiry",
        "requests_today",
        "tokens_today",
        "last_error_short",
    ]
    list_filter = ["provider", "enabled", "state"]
    search_fields = ["label", "base_url"]
    readonly_fields = ["provider", "state", "last_error", "last_error_at", "credential_summary", "created_at"]
    actions = [test_accounts, refresh_accounts, clear_cooldowns, disable_accounts, enable_accounts]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UpstreamAccount]:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        daily = UsageRollup.objects.filter(granularity=Granularity.DAY, bucket=today, account_id=OuterRef("pk"))
        # Subqueries keep the board at one SQL query however many accounts it lists.
        return (
            super()
            .get_queryset(request)
            .select_related("credential")
            .annotate(
                req_today=Coalesce(Subquery(daily.values("account_id").annotate(s=Sum("requests")).values("s")[:1]), 0),
                in_today=Coalesce(
                    Subquery(daily.values("account_id").annotate(s=Sum("input_tokens")).values("s")[:1]), 0
                ),
                out_today=Coalesce(
                    Subquery(daily.values("account_id").annotate(s=Sum("output_tokens")).values("s")[:1]), 0
                ),
                gateway_expires=Subquery(
                    GatewayToken.objects.filter(account=OuterRef("pk"))
                    .values("account")
                    .annotate(m=Min("expires_at"))
                    .values("m")[:1]
                ),
            )
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        ids = list(UpstreamAccount.objects.values_list("id", flat=True)[:500])
        token = _live.set(accounts_live_state(ids))
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()  # render while the live state is set
            return response
        finally:
            _live.reset(token)

    def _state(self, obj: UpstreamAccount) -> LiveState:
        return (_live.get() or {}).get(obj.pk) or LiveState()

    @admin.display(description="credential")
    def credential_kind(self, obj: UpstreamAccount) -> str:
        cred = getattr(obj, "credential", None)
        return cred.get_kind_display() if cred else "none"

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: UpstreamAccount) -> str:
        color = "#16a34a" if obj.state == "active" else "#dc2626"
        return format_html('<span style="color:{};font-weight:600">{}</span>', color, obj.get_state_display())

    @admin.display(description="cooldowns")
    def cooldowns(self, obj: UpstreamAccount) -> str:
        state = self._state(obj)
        if state.error:
            return format_html('<span title="{}">n/a</span>', state.error)
        if state.cooldowns is None:
            return "n/a"
        if not state.cooldowns:
            return "none"
        return format_html_join(
            "",
            '<div title="{}">{}: {}</div>',
            ((c.reason, c.scope, _duration(c.remaining)) for c in state.cooldowns),
        )

    @admin.display(description="quota")
    def quota(self, obj: UpstreamAccount) -> str:
        state = self._state(obj)
        if state.quota is None or state.error:
            return "n/a"
        if not state.quota:
            return "—"
        return format_html_join(
            "",
            "<div>{}: {}% (resets {})</div>",
            (
                (
                    q.family,
                    f"{q.used_percent:.0f}",
                    datetime.fromtimestamp(q.resets_at, UTC).strftime("%m-%d %H:%M") if q.resets_at else "?",
                )
                for q in state.quota
            ),
        )

    @admin.display(description="token expires")
    def credential_expiry(self, obj: UpstreamAccount) -> str:
        cred = getattr(obj, "credential", None)
        return _until(cred.expires_at) if cred else "—"

    @admin.display(description="gateway token")
    def gateway_expiry(self, obj: UpstreamAccount) -> str:
        return _until(getattr(obj, "gateway_expires", None))

    @admin.display(description="requests today", ordering="req_today")
    def requests_today(self, obj: UpstreamAccount) -> int:
        return int(getattr(obj, "req_today", 0) or 0)

    @admin.display(description="tokens today")
    def tokens_today(self, obj: UpstreamAccount) -> int:
        return int(getattr(obj, "in_today", 0) or 0) + int(getattr(obj, "out_today", 0) or 0)

    @admin.display(description="last error")
    def last_error_short(self, obj: UpstreamAccount) -> str:
        if not obj.last_error:
            return "—"
        when = obj.last_error_at.strftime("%m-%d %H:%M ") if obj.last_error_at else ""
        # Full upstream text on hover; the cell stays one line.
        return format_html('<span title="{}">{}{}</span>', obj.last_error, when, obj.last_error[:80])

    @admin.display(description="credential")
    def credential_summary(self, obj: UpstreamAccount) -> str:
        cred = getattr(obj, "credential", None)
        # Masked: the kind only, never any part of the secret.
        return f"{cred.get_kind_display()} (stored encrypted)" if cred else "none"

    def save_model(self, request: HttpRequest, obj: UpstreamAccount, form: Any, change: bool) -> None:
        data = form.cleaned_data
        keys = ("label", "base_url", "model_names", "priority", "weight", "enabled", "provider_config")
        fields = {k: data[k] for k in keys if k in data}
        original = UpstreamAccount.objects.get(pk=obj.pk)
        account_update(account=original, actor=request.user, **fields)
        if data.get("api_key"):
            credential_set_secret(account=original, secret={"api_key": data["api_key"]}, actor=request.user)

    # ----------------------------------------------------------------- guided add flows

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        # Accounts are added through the guided flows only: they verify the credential first.
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
            raise Http404
        providers = [
            (ProviderKind(p).label if p in ProviderKind.values else p, flows)
            for p, flows in flows_by_provider().items()
        ]
        context = {**self.admin_site.each_context(request), "title": "Add an account", "providers": providers}
        return TemplateResponse(request, "accounts/flow_choose.html", context)

    def flow_step_view(self, request: HttpRequest, flow_key: str) -> HttpResponse:
        if not self.has_add_permission(request):
            raise Http404
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


@admin.action(description="Revoke (disable) selected keys")
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
    list_display = ["name", "prefix", "owner_label", "owner", "team", "enabled", "expires_at", "limits", "created_at"]
    list_filter = ["enabled", "team"]
    search_fields = ["name", "owner_label", "prefix"]
    readonly_fields = ["prefix", "created_at", "rotated_at", "effective_limits"]
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
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClientKey]:
        return super().get_queryset(request).select_related("team", "owner")

    @admin.display(description="limits (with the team's)")
    def limits(self, obj: ClientKey) -> str:
        return _effective_label(key_limits_effective(obj))

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

    def response_add(self, request: HttpRequest, obj: ClientKey, post_url_continue: str | None = None) -> HttpResponse:
        raw = getattr(request, "_new_raw_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        key = get_object_or_404(ClientKey, pk=obj.pk)
        context = {**self.admin_site.each_context(request), "title": "Key created", "key": key, "raw_key": raw}
        response = TemplateResponse(request, "accounts/key_created.html", context)
        response["Cache-Control"] = "no-store"  # the page holds the only copy of the key
        return response


# --------------------------------------------------------------------------- teams


class TeamForm(forms.ModelForm):
    allowed_models = ModelNamesField(required=False, help_text="Comma-separated; empty = every model.")

    class Meta:
        model = Team
        fields = [
            "name",
            "members",
            "allowed_models",
            "requests_per_minute",
            "tokens_per_day",
            "budget_tokens",
            "budget_period",
            "member_key_limit",
        ]


_TEAM_FIELDS = (
    "name",
    "allowed_models",
    "requests_per_minute",
    "tokens_per_day",
    "budget_tokens",
    "budget_period",
    "member_key_limit",
)


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
        fields = {k: data[k] for k in _TEAM_FIELDS if k in data}
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
