from __future__ import annotations

from django.conf import settings
from django.db import models


class Outcome(models.TextChoices):
    OK = "ok", "OK"
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    CLIENT_DISCONNECT = "client_disconnect", "Client disconnected"
    REJECTED = "rejected", "Rejected"
    # The proxy itself failed: its database unreachable (503) or a bug (500).
    PROXY_ERROR = "proxy_error", "Proxy error"


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
    # Every upstream attempt of this request, in order: account, model, status, code, ms.
    attempt_log = models.JSONField(default=list, blank=True)
    upstream_request_id = models.CharField(max_length=200, blank=True, default="")
    error_code = models.CharField(max_length=100, blank=True, default="")
    error_message = models.CharField(max_length=500, blank=True, default="")
    # What the request cost in nano-USD (1e-9 $), set by pricing.selectors.PriceBook when the
    # record is written (or on the request path for keys under a money budget). None = the
    # model has no known price; price_source says how it was priced (pricing.PriceSource).
    cost_nanousd = models.BigIntegerField(null=True, blank=True)
    price_source = models.CharField(max_length=8, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["client_key", "created_at"]),
            models.Index(fields=["account", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.surface} {self.requested_model} {self.outcome}"


class UsageDeadLetter(models.Model):
    """A buffered usage record the database refused even after cleaning, set aside so the
    records behind it keep flowing (audit.services.usage_flush). Read-only in the admin; each
    one is also counted (llmproxy_usage_dead_letters) and logged with the reason."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    error = models.CharField(max_length=500)
    # The buffer entry as JSON text (NUL bytes escaped), at most 64 KiB.
    payload = models.TextField()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "usage dead letter"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.request_id or '?'}: {self.error[:60]}"


# Time-to-first-byte histogram bounds (ms, upper-inclusive). Percentiles are read from these
# bucket counts (interpolated within the bucket that holds the quantile), so rollups can be
# summed across hours/keys and still give p50/p95/p99. Fine at the low end, where a proxy's
# TTFB usually is (a few ms to a few hundred), so the interpolation error stays small.
TTFB_BOUNDS_MS: tuple[int, ...] = (5, 10, 25, 50, 75, 100, 150, 250, 500, 750, 1000, 2000, 5000, 10000, 30000)


class Granularity(models.TextChoices):
    """Which cube a rollup row belongs to: a time grain and the dimensions it keeps.

    The full cubes (h, d) keep account x key x model: exports, the accounts board and staff
    who may only see their own keys read them (filtered by key, so few rows). The narrow cubes
    drop dimensions so the unfiltered dashboard reads hundreds of rows per range instead of
    (hours x accounts x keys x models): "am" rows have client_key_id = 0, "k" rows have
    account_id = 0 and model = "", "ak" rows (developer x account) have model = "". Every cube
    holds the same sums, so any of them gives the
    totals and TTFB histogram of its range.
    """

    HOUR = "h", "Hour x account x key x model"
    DAY = "d", "Day x account x key x model"
    HOUR_ACCOUNT_MODEL = "ham", "Hour x account x model"
    HOUR_KEY = "hk", "Hour x key"
    HOUR_ACCOUNT_KEY = "hak", "Hour x account x key"
    DAY_ACCOUNT_MODEL = "dam", "Day x account x model"
    DAY_KEY = "dk", "Day x key"
    DAY_ACCOUNT_KEY = "dak", "Day x account x key"


class UsageRollup(models.Model):
    """Sums of UsageRecord per (hour or day) x account x key x requested model.

    Maintained incrementally by audit.rollups.rollups_update (watermark on UsageRecord.id);
    dashboards read only this table so they stay fast with tens of millions of raw rows.
    `granularity` names the cube (see Granularity): six cubes share one table, one unique key
    and one upsert statement.
    Ids are plain integers (0 = none) rather than foreign keys: NULLs would defeat the unique
    upsert key, and a deleted key or account must not delete its history.
    """

    granularity = models.CharField(max_length=3, choices=Granularity.choices)
    bucket = models.DateTimeField()
    account_id = models.BigIntegerField(default=0)
    client_key_id = models.BigIntegerField(default=0)
    model = models.CharField(max_length=200, blank=True, default="")
    account_label = models.CharField(max_length=100, blank=True, default="")
    key_prefix = models.CharField(max_length=16, blank=True, default="")
    requests = models.BigIntegerField(default=0)
    ok = models.BigIntegerField(default=0)
    upstream_errors = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    disconnects = models.BigIntegerField(default=0)
    # Requests that needed more than one attempt: an account failed or was cooling down.
    failovers = models.BigIntegerField(default=0)
    rate_limited = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cache_creation_tokens = models.BigIntegerField(default=0)
    cost_nanousd = models.BigIntegerField(default=0)  # nano-USD; records without a price add 0
    unpriced = models.BigIntegerField(default=0)  # requests with tokens but no known price
    duration_ms_sum = models.BigIntegerField(default=0)
    ttfb_count = models.BigIntegerField(default=0)
    ttfb_ms_sum = models.BigIntegerField(default=0)
    ttfb_b0 = models.BigIntegerField(default=0)  # <= 5 ms
    ttfb_b1 = models.BigIntegerField(default=0)  # <= 10 ms
    ttfb_b2 = models.BigIntegerField(default=0)  # <= 25 ms
    ttfb_b3 = models.BigIntegerField(default=0)  # <= 50 ms
    ttfb_b4 = models.BigIntegerField(default=0)  # <= 75 ms
    ttfb_b5 = models.BigIntegerField(default=0)  # <= 100 ms
    ttfb_b6 = models.BigIntegerField(default=0)  # <= 150 ms
    ttfb_b7 = models.BigIntegerField(default=0)  # <= 250 ms
    ttfb_b8 = models.BigIntegerField(default=0)  # <= 500 ms
    ttfb_b9 = models.BigIntegerField(default=0)  # <= 750 ms
    ttfb_b10 = models.BigIntegerField(default=0)  # <= 1000 ms
    ttfb_b11 = models.BigIntegerField(default=0)  # <= 2000 ms
    ttfb_b12 = models.BigIntegerField(default=0)  # <= 5000 ms
    ttfb_b13 = models.BigIntegerField(default=0)  # <= 10000 ms
    ttfb_b14 = models.BigIntegerField(default=0)  # <= 30000 ms
    ttfb_b15 = models.BigIntegerField(default=0)  # > 30000 ms

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["granularity", "bucket", "account_id", "client_key_id", "model"], name="rollup_unique_cell"
            )
        ]
        # The unique key (granularity, bucket, ...) already serves range scans of one cube, so
        # no separate (granularity, bucket) index: one index less to maintain on every upsert.
        # (granularity, client_key_id, bucket) serves staff scoped to their own keys.
        indexes = [models.Index(fields=["granularity", "client_key_id", "bucket"])]
        permissions = [("view_all_usage", "Can see every key's usage (not only their own keys')")]

    def __str__(self) -> str:
        return f"{self.get_granularity_display()} {self.bucket:%Y-%m-%d %H:00} {self.account_label} {self.model}"


class RollupWatermark(models.Model):
    """The highest UsageRecord.id already folded into the rollups (one row, name='usage')."""

    name = models.CharField(max_length=32, unique=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_id}"


class AdminAction(models.Model):
    """Who changed which account or key, when, old -> new. Never holds secrets.

    Written by the same service that makes the change (accounts.services), inside its
    transaction, so a change and its log entry commit together.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True, default="", help_text="Kept if the user is deleted.")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32)
    target_id = models.BigIntegerField(null=True, blank=True)
    target_label = models.CharField(max_length=200, blank=True, default="")
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [old, new]}")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label or 'system'} {self.action} {self.target_label}"
