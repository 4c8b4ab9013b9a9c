"""The developer page (/me/): sign in with the same Django users as the admin; see and manage
only your own keys and usage. Views parse and render; rules live in portal.services."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_POST

from accounts.display import ago_label, limit_meters, until_label
from accounts.key_usage import keys_usage
from audit.charts import line_chart
from portal.selectors import (
    RECORD_COLUMNS,
    member_daily_usage,
    member_keys,
    member_record_rows,
    member_records,
    member_teams,
)
from portal.services import (
    EXPIRY_CHOICES_DAYS,
    KeyNotFound,
    SelfServiceRefused,
    member_key_create,
    member_key_revoke,
    member_key_rotate,
)

LOGIN_URL = reverse_lazy("portal:login")
MAX_EXPORT_DAYS = 92


_STRICTER = "Optional; only a stricter value than the team's has an effect."


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. 'laptop, Claude Code'.")
    team = forms.TypedChoiceField(coerce=int)
    expires_days = forms.TypedChoiceField(
        coerce=int,
        empty_value=None,
        required=False,
        choices=[("", "never"), *((d, f"in {d} days") for d in EXPIRY_CHOICES_DAYS)],
        label="Expires",
    )
    requests_per_minute = forms.IntegerField(
        min_value=1, required=False, help_text="Optional, stricter than the team's."
    )
    tokens_per_day = forms.IntegerField(min_value=1, required=False, help_text="Optional, stricter than the team's.")
    allowed_models = forms.CharField(required=False, help_text="Optional, comma-separated: only these models.")

    def __init__(self, *args: Any, teams: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = teams  # type: ignore[attr-defined]


def _team_choices(request: HttpRequest) -> list[tuple[int, str]]:
    return [
        (a.team.pk, f"{a.team.name} ({a.held} of {a.limit} keys used)")
        for a in member_teams(request.user)
        if a.can_create
    ]


def _show_once(request: HttpRequest, key: Any, raw: str, title: str) -> HttpResponse:
    response = TemplateResponse(request, "portal/key_secret.html", {"title": title, "key": key, "raw_key": raw})
    response["Cache-Control"] = "no-store"  # the page holds the only copy of the key
    return response


@login_required(login_url=LOGIN_URL)
def home(request: HttpRequest) -> HttpResponse:
    keys = member_keys(request.user)
    usage = keys_usage(keys)
    ids = [k.pk for k in keys]
    names = {k.pk: k.name for k in keys}
    buckets, per_key = member_daily_usage(ids)
    chart = line_chart(
        title="Tokens per day (last 7 days, UTC)",
        x=buckets,
        series={names[kid]: values for kid, values in per_key.items()},
        hourly=False,
    )
    rows = [
        {
            "key": k,
            "limits": limit_meters(usage[k.pk].limits),
            "last_used": ago_label(usage[k.pk].last_used_at),
            "tokens_today": usage[k.pk].tokens_today,
            "requests_today": usage[k.pk].requests_today,
            "expires": until_label(k.expires_at) if k.expires_at else "never",
        }
        for k in keys
    ]
    records = member_records(ids)
    for r in records:
        r["key_name"] = names.get(r["client_key_id"], "?")
    teams = _team_choices(request)
    context = {
        "title": "Your keys and usage",
        "rows": rows,
        "teams": member_teams(request.user),
        "form": KeyCreateForm(teams=teams) if teams else None,
        "chart": chart,
        "records": records,
    }
    return TemplateResponse(request, "portal/home.html", context)


@login_required(login_url=LOGIN_URL)
@require_POST
def key_create(request: HttpRequest) -> HttpResponse:
    form = KeyCreateForm(request.POST, teams=_team_choices(request))
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(str(e) for e in errors)}")
        return HttpResponseRedirect(reverse("portal:home"))
    data = form.cleaned_data
    try:
        key, raw = member_key_create(
            user=request.user,
            team_id=data["team"],
            name=data["name"],
            expires_days=data["expires_days"],
            requests_per_minute=data["requests_per_minute"],
            tokens_per_day=data["tokens_per_day"],
            allowed_models=(data["allowed_models"] or "").replace("\n", ",").split(","),
        )
    except SelfServiceRefused as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("portal:home"))
    return _show_once(request, key, raw, "Key created")


@login_required(login_url=LOGIN_URL)
@require_POST
def key_rotate(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        key, raw = member_key_rotate(user=request.user, key_id=key_id)
    except KeyNotFound:
        raise Http404 from None
    except SelfServiceRefused as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("portal:home"))
    return _show_once(request, key, raw, "Key rotated")


@login_required(login_url=LOGIN_URL)
@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        key = member_key_revoke(user=request.user, key_id=key_id)
    except KeyNotFound:
        raise Http404 from None
    messages.success(request, f"Key '{key.name}' revoked: it stops working within a second.")
    return HttpResponseRedirect(reverse("portal:home"))


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(names: dict[int, str], rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    key_col = RECORD_COLUMNS.index("client_key_id")
    yield writer.writerow(("key_name", *RECORD_COLUMNS))
    for row in rows:
        cells = [v.isoformat() if isinstance(v, datetime) else v for v in row]
        yield writer.writerow([names.get(row[key_col], ""), *cells])


@login_required(login_url=LOGIN_URL)
def usage_export(request: HttpRequest) -> StreamingHttpResponse:
    """The developer's own request records as CSV: the last `days` days (7 by default)."""
    try:
        days = min(max(int(request.GET.get("days", "7")), 1), MAX_EXPORT_DAYS)
    except ValueError:
        days = 7
    end = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time.min, tzinfo=UTC)
    start = end - timedelta(days=days)
    keys = member_keys(request.user)
    rows = member_record_rows([k.pk for k in keys], start=start, end=end)
    response = StreamingHttpResponse(_csv_lines({k.pk: k.name for k in keys}, rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="my-usage-{start:%Y%m%d}-{end:%Y%m%d}.csv"'
    return response


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True
    extra_context = {"title": "Sign in"}

    def get_default_redirect_url(self) -> str:
        return str(reverse("portal:home"))


class LogoutView(auth_views.LogoutView):
    next_page = "portal:login"
