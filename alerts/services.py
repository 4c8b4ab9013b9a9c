"""Alerts: notice state changes, record them, deliver them (webhook and/or email).

`alerts_check` runs every minute (Celery beat, alerts.tasks). It compares every watched
subject's state (alerts.selectors) with the one it saw last (AlertState) and records an
AlertEvent per change, so each alert is sent once per state change however often the check
runs. Delivery goes to every enabled AlertChannel plus PROXY_ALERT_WEBHOOK_URL /
PROXY_ALERT_EMAILS from the settings; an event that did not reach every channel is tried again
on the next runs (at most MAX_TRIES, and not once it is a day old).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.validators import upstream_url_validate
from alerts.models import AlertChannel, AlertEvent, AlertState, ChannelKind
from alerts.selectors import Condition, conditions_current
from audit.services import model_save_logged

log = logging.getLogger(__name__)

MAX_TRIES = 5
RETRY_FOR = timedelta(days=1)
WEBHOOK_TIMEOUT = 5.0


def alerts_record(conditions: list[Condition], *, now: datetime | None = None) -> list[AlertEvent]:
    """Compare with the last seen states; store the new ones and an event per change worth
    telling (a first sighting counts as a change only when it is alarming)."""
    now = now or timezone.now()
    seen = {s.subject: s for s in AlertState.objects.filter(subject__in=[c.subject for c in conditions])}
    events = []
    with transaction.atomic():
        for c in conditions:
            prev = seen.get(c.subject)
            if prev is not None and prev.state == c.state:
                continue
            old = prev.state if prev else ""
            if prev is None:
                AlertState.objects.create(subject=c.subject, state=c.state, changed_at=now)
            else:
                AlertState.objects.filter(pk=prev.pk).update(state=c.state, changed_at=now)
            if c.alarming or (prev is not None and not c.quiet_recovery):
                message = c.text if c.alarming else f"Recovered: {c.text}"
                events.append(
                    AlertEvent.objects.create(
                        subject=c.subject, kind=c.kind, old_state=old, new_state=c.state, message=message
                    )
                )
    return events


def _channels() -> list[tuple[str, str]]:
    out = [(ch.kind, ch.target) for ch in AlertChannel.objects.filter(enabled=True)]
    if getattr(settings, "PROXY_ALERT_WEBHOOK_URL", ""):
        out.append((ChannelKind.WEBHOOK, settings.PROXY_ALERT_WEBHOOK_URL))
    if getattr(settings, "PROXY_ALERT_EMAILS", ""):
        out.append((ChannelKind.EMAIL, settings.PROXY_ALERT_EMAILS))
    return out


def webhook_send(url: str, text: str) -> None:
    """POST {"text": ...}: what Slack incoming webhooks (and most chat tools) accept."""
    upstream_url_validate(url)  # the same SSRF guard as upstream URLs
    response = httpx.post(url, json={"text": text}, timeout=WEBHOOK_TIMEOUT, follow_redirects=False)
    if response.status_code >= 300:
        raise RuntimeError(f"webhook answered HTTP {response.status_code}")


def email_send(recipients: str, subject: str, text: str) -> None:
    to = [a.strip() for a in recipients.split(",") if a.strip()]
    if to:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, to)


def alert_deliver(event: AlertEvent, channels: list[tuple[str, str]]) -> bool:
    """Send one event to every channel; True when all of them took it."""
    errors = []
    subject = f"[LLM proxy] {event.message[:120]}"
    for kind, target in channels:
        try:
            if kind == ChannelKind.WEBHOOK:
                webhook_send(target, event.message)
            else:
                email_send(target, subject, event.message)
        except Exception as exc:  # one dead channel must not stop the others
            log.warning("alert %s not delivered to a %s channel: %s", event.pk, kind, exc)
            errors.append(f"{kind}: {exc}"[:200])
    event.tries += 1
    event.delivered = bool(channels) and not errors
    event.last_error = "; ".join(errors)[:500] if channels else "no alert channel configured"
    event.save(update_fields=["tries", "delivered", "last_error"])
    return event.delivered


def alerts_deliver_pending(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    channels = _channels()
    if not channels:
        return 0
    pending = AlertEvent.objects.filter(delivered=False, tries__lt=MAX_TRIES, created_at__gte=now - RETRY_FOR)
    return sum(alert_deliver(event, channels) for event in pending.order_by("id"))


def alerts_check(*, now: datetime | None = None) -> int:
    """One round: record state changes, deliver what is pending. Returns alerts delivered."""
    alerts_record(conditions_current(now), now=now)
    return alerts_deliver_pending(now=now)


# --------------------------------------------------------------------------- channels


def alert_channel_validate(channel: AlertChannel) -> None:
    if channel.kind == ChannelKind.WEBHOOK:
        try:
            channel.target = upstream_url_validate(channel.target)
        except ValidationError as exc:
            raise ValidationError({"target": exc.messages}) from None
    else:
        addresses = [a.strip() for a in channel.target.split(",") if a.strip()]
        if not addresses or any("@" not in a for a in addresses):
            raise ValidationError({"target": "Give one or more email addresses, separated by commas."})
        channel.target = ", ".join(addresses)


def alert_channel_save(channel: AlertChannel, *, actor: Any | None = None) -> AlertChannel:
    alert_channel_validate(channel)
    fields = ("kind", "target", "enabled", "note")
    return model_save_logged(channel, fields=fields, target_type="alert_channel", actor=actor)


def alert_channel_test(channel: AlertChannel) -> None:
    """Send a test message now (raises with the reason if the channel does not take it)."""
    text = "Test alert from the team LLM proxy: this channel works."
    if channel.kind == ChannelKind.WEBHOOK:
        webhook_send(channel.target, text)
    else:
        email_send(channel.target, "[LLM proxy] test alert", text)
