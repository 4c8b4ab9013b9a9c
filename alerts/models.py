from __future__ import annotations

from django.db import models


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (Slack-compatible JSON)"
    EMAIL = "email", "Email (Django's mail backend)"


class AlertChannel(models.Model):
    """Where alerts go: a webhook URL (Slack incoming webhooks and anything that takes
    {"text": ...}) or a comma-separated list of email addresses."""

    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    target = models.CharField(max_length=500, help_text="Webhook URL, or email addresses separated by commas.")
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["kind", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.target[:60]}"


class AlertState(models.Model):
    """The last known state of one watched subject (an account, a budget, a quota window), so
    each alert is sent once per change of state, not on every check."""

    subject = models.CharField(max_length=200, unique=True)  # e.g. "account:3", "budget:key:7:money:month"
    state = models.CharField(max_length=32)
    changed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.subject}: {self.state}"


class AlertEvent(models.Model):
    """One alert: what changed, the message, and whether it reached every channel."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    subject = models.CharField(max_length=200)
    kind = models.CharField(max_length=32)  # "account", "budget", "quota"
    old_state = models.CharField(max_length=32, blank=True, default="")
    new_state = models.CharField(max_length=32)
    message = models.TextField()
    delivered = models.BooleanField(default=False)
    tries = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.subject}: {self.old_state or '-'} -> {self.new_state}"
