"""Adding OpenAI-compatible accounts (the admin flow and the account_add command call this)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from accounts.models import UpstreamAccount
from accounts.services import account_create
from executors.openai_compat import KIND, CredentialKind


def account_add_openai_compat(
    *,
    label: str,
    base_url: str,
    api_key: str,
    model_names: Iterable[str],
    priority: int = 0,
    weight: int = 1,
    actor: Any | None = None,
) -> UpstreamAccount:
    return account_create(
        label=label,
        provider=KIND,
        base_url=base_url,
        model_names=model_names,
        credential_kind=CredentialKind.API_KEY,
        secret={"api_key": api_key},
        priority=priority,
        weight=weight,
        actor=actor,
    )
