"""Form fields and cleaners the providers' add-account forms share, so the same input is
asked for and checked the same way in every provider's flow."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import UpstreamAccount
from accounts.validators import upstream_url_validate


def allow_duplicate_field(what: str) -> forms.BooleanField:
    """The explicit confirmation for adding an upstream identity that is already an account
    (services raise accounts.services.DuplicateIdentity without it)."""
    return forms.BooleanField(
        required=False,
        label="Add even if already added",
        help_text=f"Only if you mean it: two accounts for the same {what} share one quota, and refreshing one "
        "credential can sign the other out. Without this, a duplicate is refused.",
    )


def url_field(label: str, initial: str, help_text: str) -> forms.URLField:
    """A server address the admin may change (https assumed); the flow still passes it through
    the SSRF guard (accounts.validators.upstream_url_validate) before contacting it."""
    return forms.URLField(max_length=500, initial=initial, assume_scheme="https", label=label, help_text=help_text)


def url_checked(value: str, field: str) -> str:
    """The address after the SSRF guard, which runs on the admin's input before anything
    contacts it; a refusal names the field."""
    try:
        return upstream_url_validate(value)
    except ValidationError as exc:
        raise forms.ValidationError(f"{field}: {' '.join(exc.messages)}") from None


def label_clean(value: str, kind: str) -> str:
    """A label that no other provider's account uses (reusing this provider's own label signs
    that account in again)."""
    label = value.strip()
    other = UpstreamAccount.objects.filter(label=label).exclude(provider=kind).first()
    if other is not None:
        raise forms.ValidationError(f"The label is used by a {other.get_provider_display()} account.")
    return label
