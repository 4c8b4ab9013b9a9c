from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    OK = "ok", "OK"
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    CLIENT_DISCONNECT = "client_disconnect", "Client disconnected"
    REJECTED = "rejected", "Rejected"


class UsageRecord(models.Model):
    """One row per client request, whatever happened. The raw truth behind every report."""

    request_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    # No DB constraint: rows arrive from a buffer and must insert even if the key or
    # account was deleted meanwhile; the labels below keep the record readable.
    client_key = models.ForeignKey(
        "accounts.ClientKey", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    key_prefix = models.CharField(max_length=16, blank=True, default="")
    account = models.ForeignKey(
        "accounts.UpstreamAccount",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    account_label = models.CharField(max_length=100, blank=True, default="")
    surface = models.CharField(max_length=32)
    requested_model = models.CharField(max_length=200, blank=True, default="")
    served_model = models.CharField(max_length=200, blank=True, default="")
    stream = models.BooleanField(default=False)
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField()
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cache_creation_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    ttfb_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    upstream_request_id = models.CharField(max_length=200, blank=True, default="")
    error_code = models.CharField(max_length=100, blank=True, default="")
    error_message = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["client_key", "created_at"]),
            models.Index(fields=["account", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.surface} {self.requested_model} {self.outcome}"
