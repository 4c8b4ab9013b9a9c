from __future__ import annotations

from django.db import models

from accounts.models import EncryptedJSONField, UpstreamAccount


class GatewayToken(models.Model):
    """A short-lived AI-gateway token minted from a GitLab account's credential.

    The `direct_access` grants (one row per grant kind), refreshed by Celery ahead of expiry.
    The token and the headers that must be forwarded verbatim are encrypted. The table keeps
    the name it had when this model lived in accounts (moved without touching data).
    """

    account = models.ForeignKey(UpstreamAccount, on_delete=models.CASCADE, related_name="gateway_tokens")
    grant_kind = models.CharField(max_length=64)
    base_url = models.URLField(max_length=500, blank=True, default="")
    secret = EncryptedJSONField(help_text="{'token': ..., 'headers': {...}}")
    expires_at = models.DateTimeField()
    minted_at = models.DateTimeField()
    model_details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "accounts_gatewaytoken"
        constraints = [models.UniqueConstraint(fields=["account", "grant_kind"], name="one_token_per_grant")]

    def __str__(self) -> str:
        return f"{self.grant_kind} token for {self.account.label} (expires {self.expires_at:%Y-%m-%d %H:%M})"
