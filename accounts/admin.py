"""Admin for accounts and keys. Classes stay thin: every change goes through services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from accounts.models import ClientKey, ProviderKind, UpstreamAccount
from accounts.services import (
    account_add_openai_compat,
    account_set_enabled,
    account_update,
    client_key_create,
    client_key_set_enabled,
    client_key_update,
    credential_set_secret,
)


class ModelNamesField(forms.CharField):
    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return sorted({m.strip() for m in text.replace("\n", ",").split(",") if m.strip()})


class AccountForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored key.",
    )
    model_names = ModelNamesField(required=False, help_text="Comma-separated model names.")

    class Meta:
        model = UpstreamAccount
        fields = ["label", "provider", "base_url", "api_key", "model_names", "priority", "weight", "enabled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.instance.pk is None:
            if data.get("provider") != ProviderKind.OPENAI_COMPAT:
                raise forms.ValidationError("Only OpenAI-compatible accounts can be added here for now.")
            if not data.get("api_key"):
                self.add_error("api_key", "An API key is required for a new account.")
        return data


@admin.action(description="Disable selected accounts")
def disable_accounts(modeladmin: Any, request: HttpRequest, queryset: Any) -> None:
    for account in queryset:
        account_set_enabled(account=account, enabled=False)


@admin.action(description="Enable selected accounts")
def enable_accounts(modeladmin: Any, request: HttpRequest, queryset: Any) -> None:
    for account in queryset:
        account_set_enabled(account=account, enabled=True)


@admin.register(UpstreamAccount)
class UpstreamAccountAdmin(admin.ModelAdmin):
    form = AccountForm
    list_display = ["label", "provider", "enabled", "state", "priority", "weight", "models_served", "last_error_at"]
    list_filter = ["provider", "enabled", "state"]
    search_fields = ["label", "base_url"]
    readonly_fields = ["state", "last_error", "last_error_at", "credential_summary", "created_at", "updated_at"]
    actions = [disable_accounts, enable_accounts]

    @admin.display(description="models")
    def models_served(self, obj: UpstreamAccount) -> str:
        return ", ".join(obj.model_names)

    @admin.display(description="credential")
    def credential_summary(self, obj: UpstreamAccount) -> str:
        cred = getattr(obj, "credential", None)
        # Masked: the kind only, never any part of the secret.
        return f"{cred.get_kind_display()} (stored encrypted)" if cred else "none"

    def save_model(self, request: HttpRequest, obj: UpstreamAccount, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = account_add_openai_compat(
                label=data["label"],
                base_url=data["base_url"],
                api_key=data["api_key"],
                model_names=data["model_names"],
                priority=data["priority"],
                weight=data["weight"],
            )
            obj.pk = created.pk
            return
        fields = {k: data[k] for k in ("label", "base_url", "model_names", "priority", "weight", "enabled")}
        account_update(account=obj, **fields)
        if data.get("api_key"):
            credential_set_secret(account=obj, secret={"api_key": data["api_key"]})


class ClientKeyForm(forms.ModelForm):
    allowed_models = ModelNamesField(required=False, help_text="Comma-separated; empty = every model.")

    class Meta:
        model = ClientKey
        fields = ["name", "owner", "owner_label", "enabled", "expires_at", "allowed_models"]


@admin.action(description="Revoke (disable) selected keys")
def revoke_keys(modeladmin: Any, request: HttpRequest, queryset: Any) -> None:
    for key in queryset:
        client_key_set_enabled(key=key, enabled=False)


@admin.register(ClientKey)
class ClientKeyAdmin(admin.ModelAdmin):
    form = ClientKeyForm
    list_display = ["name", "prefix", "owner_label", "owner", "enabled", "expires_at", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "owner_label", "prefix"]
    readonly_fields = ["prefix", "created_at"]
    actions = [revoke_keys]

    def save_model(self, request: HttpRequest, obj: ClientKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created, raw = client_key_create(
                name=data["name"],
                owner_label=data["owner_label"],
                owner_id=data["owner"].pk if data.get("owner") else None,
                expires_at=data["expires_at"],
                allowed_models=data["allowed_models"],
            )
            obj.pk = created.pk
            messages.warning(request, f"New key for '{created.name}' — copy it now, it is not shown again: {raw}")
            return
        client_key_update(
            key=obj,
            **{k: data[k] for k in ("name", "owner_label", "enabled", "expires_at", "allowed_models")},
        )
