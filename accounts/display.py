"""How times, durations, counts and limits read on the admin and developer pages (pure
functions of values, no queries)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

_MINUTE, _HOUR, _DAY = 60, 3600, 86400


def duration_human(seconds: float) -> str:
    """45s, 12m05s, 5h12m, 3 days, 5 months, 72 years: precise when close, coarse when far."""
    seconds = max(0, int(seconds))
    if seconds < _MINUTE:
        return f"{seconds}s"
    if seconds < _HOUR:
        return f"{seconds // _MINUTE}m{seconds % _MINUTE:02d}s"
    if seconds < 2 * _DAY:
        return f"{seconds // _HOUR}h{seconds % _HOUR // _MINUTE:02d}m"
    days = seconds // _DAY
    if days < 60:
        return f"{days} days"
    if days < 730:
        return f"{days // 30} months"
    return f"{days // 365} years"


def until_label(value: datetime | None, *, now: datetime | None = None) -> str:
    """'2026-03-01 14:00 (in 3 days)' or '… (expired)'; '—' for none."""
    if value is None:
        return "—"
    delta = (value - (now or timezone.now())).total_seconds()
    when = value.strftime("%Y-%m-%d %H:%M")
    return f"{when} (expired)" if delta <= 0 else f"{when} (in {duration_human(delta)})"


def ago_label(value: datetime | None, *, now: datetime | None = None) -> str:
    """'just now', '4m12s ago', '3 days ago'; 'never' for none."""
    if value is None:
        return "never"
    delta = ((now or timezone.now()) - value).total_seconds()
    return "just now" if delta < 5 else f"{duration_human(delta)} ago"


def count_short(n: int | float) -> str:
    """1234 -> 1.2k, 3_400_000 -> 3.4M: table cells stay narrow."""
    n = int(n)
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f}{suffix}".replace(".0" + suffix, suffix) if value < 100 else f"{value:.0f}{suffix}"
    return str(n)


_LIMIT_NAMES = {"requests_per_minute": "req/min", "tokens_per_day": "tok/day", "budget": "tok/"}


def limit_meters(limits: Iterable[Any] | None) -> str:
    """HTML: one bar per limit ("tok/day 1.2k / 5k"), amber from 80 %, red when full.

    `limits` are state.limits.LimitUsage; None = the state store did not answer."""
    if limits is None:
        return mark_safe('<span class="sub">limits: n/a (state store unavailable)</span>')
    rows = []
    for u in limits:
        name = _LIMIT_NAMES.get(u.which, u.which) + (u.period if u.which == "budget" else "")
        share = u.used / u.limit if u.limit else 1.0
        css = "meter full" if share >= 1 else "meter warn" if share >= 0.8 else "meter"
        rows.append(
            format_html(
                '<div class="limit" title="resets in {}"><span class="{}"><span style="width:{}%"></span></span>'
                "{} {} / {}</div>",
                duration_human(u.resets_in),
                css,
                f"{min(100.0, 100 * share):.0f}",
                name,
                count_short(u.used),
                count_short(u.limit),
            )
        )
    return format_html_join("", "{}", ((r,) for r in rows)) if rows else "no limits"
