"""Form fields and cleaners the providers' add-account forms share, so the same input is
asked for and checked the same way in every provider's flow."""

from __future__ import annotations

from typing import Any

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
    """An address the admin may change that the proxy itself never contacts (e.g. a redirect URI)."""
    return forms.URLField(max_length=500, initial=initial, assume_scheme="https", label=label, help_text=help_text)


class UpstreamURLField(forms.URLField):
    """An address the proxy will contact: the SSRF guard (upstream_url_validate) is part of the
    field's own cleaning, before any wire call, so no form can leave it out. A refusal names
    the field (`named`)."""

    def __init__(self, *, named: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.named = named

    def clean(self, value: Any) -> str:
        url: str = super().clean(value)
        try:
            return upstream_url_validate(url)
        except ValidationError as exc:
            raise forms.ValidationError(f"{self.named}: {' '.join(exc.messages)}") from None


def upstream_url_field(label: str, initial: str, help_text: str, *, named: str) -> UpstreamURLField:
    return UpstreamURLField(
        named=named, max_length=500, initial=initial, assume_scheme="https", label=label, help_text=help_text
    )


def label_clean(value: str, kind: str) -> str:
    """A label that no other provider's account uses (reusing this provider's own label signs
    that account in again)."""
    label = value.strip()
    other = UpstreamAccount.objects.filter(label=label).exclude(provider=kind).first()
    if other is not None:
        raise forms.ValidationError(f"The label is used by a {other.get_provider_display()} account.")
    return label
