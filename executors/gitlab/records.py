"""Every GitLab-specific database write, in one place (row locks taken in one order:
credential before gateway token). All functions are sync; async callers use db_call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import AccountState, Credential, UpstreamAccount
from accounts.services import cache_version_bump
from executors.gitlab.models import GatewayToken
from infra.redact import redact

GRANT_KIND = "third_party_agents"


def _epoch_to_dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


def gitlab_account_state_set(*, account_id: int, state: str, message: str = "") -> None:
    """Persist a human-facing account state (auth_failed, not_entitled, ...) with its reason."""
    with transaction.atomic():
        fields: dict[str, Any] = {"state": state}
        if state != AccountState.ACTIVE or message:
            # GitLab's own text is quoted in the reason: no secret may reach the admin.
            fields.update(last_error=redact(message)[:2000], last_error_at=timezone.now())
        changed = UpstreamAccount.objects.filter(pk=account_id).exclude(**fields).update(**fields)
        if changed:
            transaction.on_commit(cache_version_bump)


def gitlab_credential_rotate(
    *, account_id: int, used_refresh_token: str, secret: dict[str, Any], expires_at: float | None
) -> bool:
    """Store a freshly rotated OAuth pair atomically, before anyone uses it.

    The row lock serialises writers; the compare on the refresh token we spent makes a late
    writer (whose rotation lost a race) a no-op instead of overwriting a newer pair.
    Returns False when the stored pair had already moved on.
    """
    with transaction.atomic():
        cred = Credential.objects.select_for_update().get(account_id=account_id)
        if (cred.secret or {}).get("refresh_token") != used_refresh_token:
            return False
        cred.secret = secret
        cred.expires_at = _epoch_to_dt(expires_at)
        cred.save(update_fields=["secret", "expires_at", "updated_at"])
        transaction.on_commit(cache_version_bump)
    return True


def gitlab_gateway_token_save(
    *, account_id: int, token: str, headers: dict[str, str], expires_at: float, gateway_url: str
) -> None:
    with transaction.atomic():
        GatewayToken.objects.update_or_create(
            account_id=account_id,
            grant_kind=GRANT_KIND,
            defaults={
                "base_url": gateway_url,
                "secret": {"token": token, "headers": headers},
                "expires_at": datetime.fromtimestamp(expires_at, tz=UTC),
                "minted_at": timezone.now(),
            },
        )


def gitlab_gateway_token_read(*, account_id: int) -> tuple[str, dict[str, str], float, str] | None:
    row = GatewayToken.objects.filter(account_id=account_id, grant_kind=GRANT_KIND).first()
    if row is None:
        return None
    secret = row.secret or {}
    return str(secret.get("token", "")), dict(secret.get("headers") or {}), row.expires_at.timestamp(), row.base_url


def gitlab_gateway_token_drop(*, account_id: int, token: str) -> None:
    """Forget a token the gateway rejected (only that token: a newer one may already be stored)."""
    for row in GatewayToken.objects.filter(account_id=account_id, grant_kind=GRANT_KIND):
        if (row.secret or {}).get("token") == token:
            row.delete()
