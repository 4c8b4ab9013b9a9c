"""Small text helpers for the admin pages (shared by the board and providers' board columns)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def until_text(value: datetime | None) -> str:
    if value is None:
        return "—"
    delta = (value - timezone.now()).total_seconds()
    when = value.strftime("%Y-%m-%d %H:%M")
    return f"{when} (expired)" if delta <= 0 else f"{when} (in {duration_text(delta)})"
