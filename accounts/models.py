from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models

from accounts.crypto import decrypt_json, encrypt_json

# Callables, so the choices come from the registered providers (and migrations never list them).
from accounts.providers import credential_kind_choices, provider_choices


class AccountState(models.TextChoices):
    # Persistent states that need a human; timed cooldowns live in the state store.
    ACTIVE = "active", "Active"
    AUTH_FAILED = "auth_failed", "Credential rejected"
    NOT_ENTITLED = "not_entitled", "Not entitled"
    QUOTA_EXHAUSTED = "quota_exhausted", "Quota exhausted"
    SESSION_TERMINATED = "session_terminated", "Session terminated"


class UpstreamAccount(models.Model):
    label = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=32, choices=provider_choices)
    base_url = models.URLField(max_length=500, help_text="For OpenAI-compatible accounts: the URL ending in /v1.")
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=0, help_text="Higher tiers are tried first.")
    weight = models.PositiveIntegerField(default=1)
    model_names = models.JSONField(default=list, blank=True, help_text="Model names this account serves.")
    # Non-secret, provider-specific settings (instance URL, gateway URL, OAuth client id,
    # transport preferences...). Only the provider's executor and login flows read its keys.
    provider_config = models.JSONField(default=dict, blank=True)
    # One stable installation/device id per account (e.g. Codex's x-codex-installation-id), so
    # each account looks like one persisted client install. Never derived from internal keys.
    installation_id = models.UUIDField(default=uuid.uuid4, editable=False)
    state = models.CharField(max_length=32, choices=AccountState.choices, default=AccountState.ACTIVE)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "label"]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_provider_display()})"


class EncryptedJSONField(models.TextField):
    """A dict stored as a Fernet token; the plaintext never reaches the database."""

    # What django-stubs reads as the Python-side types (the column itself holds text).
    _pyi_private_set_type: dict[str, Any] | None  # type: ignore[assignment]
    _pyi_private_get_type: dict[str, Any]  # type: ignore[assignment]

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any] | None:
        return None if value is None else decrypt_json(value)

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            return value
        return decrypt_json(value)

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TypeError("EncryptedJSONField stores dicts")
        return encrypt_json(value)


class Credential(models.Model):
    account = models.OneToOneField(UpstreamAccount, on_delete=models.CASCADE, related_name="credential")
    kind = models.CharField(max_length=16, choices=credential_kind_choices)
    secret = EncryptedJSONField()
    expires_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.account.label}"


class BudgetPeriod(models.TextChoices):
    # Calendar periods in UTC, so every process agrees on where a period starts.
    DAY = "day", "Day"
    WEEK = "week", "Week (ISO, from Monday)"
    MONTH = "month", "Month"


class Team(models.Model):
    """A group of developers and their keys. Keys of a team inherit its allowed models and
    per-key limits; a key's own setting can only narrow them (the stricter value applies)."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Models every key of this team may use. Empty = every model."
    )
    # Limits every key of the team gets (empty = no team limit). A key with its own value
    # gets the smaller of the two.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Per key.")
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True, help_text="Per key, per UTC day.")
    budget_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Per key: tokens (input + output) allowed per budget period."
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    # Developer self-service: how many enabled keys a member may hold that they made
    # themselves (0 = members cannot create keys; an admin hands them out).
    member_key_limit = models.PositiveSmallIntegerField(
        default=0, help_text="Enabled keys each member may create for themselves (0 = none)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ClientKey(models.Model):
    """A developer's key. Only a SHA-256 of the key is stored; the key is shown once."""

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="client_keys"
    )
    owner_label = models.CharField(max_length=150, blank=True, default="", help_text="Who holds this key.")
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="keys",
        help_text="The key gets the team's allowed models and limits (its own settings can only narrow them).",
    )
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    enabled = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(default=list, blank=True, help_text="Empty = every model.")
    # Limits, enforced atomically in the state store by state.limits (empty = no limit).
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True, help_text="Per UTC calendar day.")
    budget_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens (input + output) allowed per budget period."
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the secret is replaced (client_key_rotate): same record, limits and history.
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        # Staff without it see (and may act on) only the keys they own; the same split as
        # audit.view_all_usage for usage.
        permissions = [("view_all_keys", "Can see every developer's keys (not only their own)")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
