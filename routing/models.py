from __future__ import annotations

from django.db import models


class ResponseSnapshot(models.Model):
    """A Responses-API answer kept so `previous_response_id` can continue it on any upstream.

    Scoped to the client key that created it. `items` is the whole conversation so far in
    canonical (Responses) input-item form: the request's input followed by the output.
    `provider_meta` is opaque, validated JSON owned by the executor that served the answer
    (e.g. Codex session/window ids); nothing outside that executor reads its keys.
    """

    # Unique per key, not globally: response ids come from upstreams (or clients' choice of
    # upstream), so two keys can see the same id; one must never overwrite the other's
    # conversation (issue 17 F10).
    response_id = models.CharField(max_length=100)
    client_key = models.ForeignKey(
        "accounts.ClientKey", on_delete=models.CASCADE, db_constraint=False, related_name="+"
    )
    account = models.ForeignKey(
        "accounts.UpstreamAccount",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
    )
    model = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, default="")
    items = models.JSONField(default=list)
    provider_meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_key", "response_id"], name="snapshot_unique_per_key"),
        ]

    def __str__(self) -> str:
        return self.response_id


class Strategy(models.TextChoices):
    ROUND_ROBIN = "round_robin", "Round robin"
    WEIGHTED = "weighted", "Weighted (account weight)"
    FILL_FIRST = "fill_first", "Fill first (stable order)"
    LEAST_RECENT = "least_recent", "Least recently used"


class CatalogEntry(models.Model):
    """Admin-editable catalog data: stable aliases and per-model facts.

    With `targets`, `name` is an alias clients may call (e.g. `gitlab-duo`) that resolves to the
    listed upstream models in order, surviving upstream renames. Without targets, the entry only
    sets facts for a model or a family (dated variants like `gpt-5.5-2026-04-23` inherit the
    facts of `gpt-5.5`). Unset facts fall back to the built-in defaults.
    """

    name = models.CharField(max_length=200, unique=True)
    targets = models.JSONField(default=list, blank=True, help_text="Upstream model names, in order.")
    strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.ROUND_ROBIN)
    responses_only = models.BooleanField(null=True, blank=True, help_text="Chat upstreams must use /responses.")
    prefer_websockets = models.BooleanField(null=True, blank=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    listed = models.BooleanField(default=True, help_text="Show in /v1/models.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "catalog entries"

    def __str__(self) -> str:
        return self.name
