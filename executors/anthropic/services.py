"""Adding Anthropic API accounts (the admin flow calls this)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from accounts.models import UpstreamAccount
from accounts.services import account_create
from executors.anthropic import DEFAULT_BASE_URL, KIND, CredentialKind, base_url_normalize


def account_add_anthropic(
    *, label: str, api_key: str, model_names: Iterable[str], base_url: str = DEFAULT_BASE_URL, **placement: Any
) -> UpstreamAccount:
    """A new account for the key; `placement` is account_create's priority, weight and actor."""
    url = base_url_normalize(base_url)
    secret = {"api_key": api_key}
    kind = CredentialKind.API_KEY
    return account_create(
        label=label,
        provider=KIND,
        base_url=url,
        model_names=model_names,
        credential_kind=kind,
        secret=secret,
        **placement,
    )
