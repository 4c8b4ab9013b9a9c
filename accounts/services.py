"""Account and client-key business logic. Admin, commands and tasks call these."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction

from accounts.models import ClientKey, Credential, CredentialKind, ProviderKind, UpstreamAccount
from statestore.factory import call_sync

CLIENT_KEY_PREFIX = "sk-team-"
CACHE_VERSION_KEY = "cache:version"


def client_key_hash(raw_key: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted hash is safe against offline guessing
    # and lets verification be one indexed equality lookup.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def cache_version_bump() -> None:
    """Tell every process that keys or accounts changed (their caches re-read within ~1 s)."""

    async def bump(store: Any) -> int:
        return int(await store.incr(CACHE_VERSION_KEY))

    call_sync(bump)


def _on_commit_bump() -> None:
    transaction.on_commit(cache_version_bump)


def account_create(
    *,
    label: str,
    provider: str,
    base_url: str,
    model_names: Iterable[str],
    credential_kind: str,
    secret: dict[str, Any],
    priority: int = 0,
    weight: int = 1,
    enabled: bool = True,
) -> UpstreamAccount:
    if provider not in ProviderKind.values:
        raise ValueError(f"unknown provider {provider!r}")
    if credential_kind not in CredentialKind.values:
        raise ValueError(f"unknown credential kind {credential_kind!r}")
    with transaction.atomic():
        account = UpstreamAccount.objects.create(
            label=label,
            provider=provider,
            base_url=base_url.rstrip("/"),
            model_names=sorted({m.strip() for m in model_names if m.strip()}),
            priority=priority,
            weight=weight,
            enabled=enabled,
        )
        Credential.objects.create(account=account, kind=credential_kind, secret=secret)
        _on_commit_bump()
    return account


def account_add_openai_compat(
    *, label: str, base_url: str, api_key: str, model_names: Iterable[str], priority: int = 0, weight: int = 1
) -> UpstreamAccount:
    return account_create(
        label=label,
        provider=ProviderKind.OPENAI_COMPAT,
        base_url=base_url,
        model_names=model_names,
        credential_kind=CredentialKind.API_KEY,
        secret={"api_key": api_key},
        priority=priority,
        weight=weight,
    )


def account_update(*, account: UpstreamAccount, **fields: Any) -> UpstreamAccount:
    allowed = {"label", "base_url", "enabled", "priority", "weight", "model_names", "state", "last_error"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    with transaction.atomic():
        for name, value in fields.items():
            setattr(account, name, value)
        account.save()
        _on_commit_bump()
    return account


def account_set_enabled(*, account: UpstreamAccount, enabled: bool) -> UpstreamAccount:
    return account_update(account=account, enabled=enabled)


def credential_set_secret(
    *, account: UpstreamAccount, secret: dict[str, Any], expires_at: datetime | None = None
) -> None:
    with transaction.atomic():
        Credential.objects.filter(account=account).update(
            secret=Credential._meta.get_field("secret").get_prep_value(secret),  # type: ignore[attr-defined]
            expires_at=expires_at,
        )
        _on_commit_bump()


def client_key_create(
    *,
    name: str,
    owner_label: str = "",
    owner_id: int | None = None,
    expires_at: datetime | None = None,
    allowed_models: Iterable[str] = (),
) -> tuple[ClientKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    raw = CLIENT_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ClientKey.objects.create(
        name=name,
        owner_label=owner_label,
        owner_id=owner_id,
        prefix=raw[: len(CLIENT_KEY_PREFIX) + 6],
        key_hash=client_key_hash(raw),
        expires_at=expires_at,
        allowed_models=sorted({m.strip() for m in allowed_models if m.strip()}),
    )
    transaction.on_commit(cache_version_bump)
    return key, raw


def client_key_update(*, key: ClientKey, **fields: Any) -> ClientKey:
    allowed = {"name", "owner_label", "enabled", "expires_at", "allowed_models"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    with transaction.atomic():
        for name, value in fields.items():
            setattr(key, name, value)
        key.save()
        _on_commit_bump()
    return key


def client_key_set_enabled(*, key: ClientKey, enabled: bool) -> ClientKey:
    return client_key_update(key=key, enabled=enabled)
