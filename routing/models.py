from __future__ import annotations

from django.db import models


class ResponseSnapshot(models.Model):
    """A Responses-API answer kept so `previous_response_id` can continue it on any upstream.

    Scoped to the client key that created it. `items` is the whole conversation so far in
    canonical (Responses) input-item form: the request's input followed by the output.
    `provider_meta` is opaque, validated JSON owned by the executor that served the answer
    (e.g. Codex session/window ids); nothing outside that executor reads its keys.
    """

    response_id = models.CharField(max_length=100, unique=True)
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

    def __str__(self) -> str:
        return self.response_id
