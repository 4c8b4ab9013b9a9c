"""Reads for GitLab accounts: the hot-path config view and the Celery refresh worklist."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import AccountState, ProviderKind, UpstreamAccount
from accounts.selectors import AccountInfo
from proxy_project.db import db_call

# §8: accounts refused for entitlement are re-probed every 6-24 h (a seat may be assigned later).
REPROBE_AFTER = timedelta(hours=6)

_configs: dict[int, tuple[dict[str, Any], float]] = {}


def gitlab_config_cache_clear() -> None:
    _configs.clear()


def _config_read(account_id: int) -> dict[str, Any]:
    row = UpstreamAccount.objects.filter(pk=account_id).values_list("provider_config", flat=True).first()
    return dict(row or {})


async def gitlab_account_config(account: AccountInfo) -> dict[str, Any]:
    """provider_config of an account on the hot path, cached per process like AccountInfo.

    AccountInfo does not carry provider_config (yet); when it does, that copy is used.
    """
    carried = getattr(account, "provider_config", None)
    if isinstance(carried, dict):
        return carried
    now = time.monotonic()
    hit = _configs.get(account.id)
    if hit is not None and now - hit[1] < settings.PROXY_CACHE_TTL_SECONDS:
        return hit[0]
    config = await db_call(_config_read, account.id)
    _configs[account.id] = (config, now)
    return config


def gitlab_account_ids_for_refresh() -> list[int]:
    """Enabled GitLab accounts whose gateway token should be kept warm (or re-probed)."""
    reprobe = Q(state=AccountState.NOT_ENTITLED) & (
        Q(last_error_at__isnull=True) | Q(last_error_at__lt=timezone.now() - REPROBE_AFTER)
    )
    rows = UpstreamAccount.objects.filter(provider=ProviderKind.GITLAB, enabled=True).filter(
        Q(state=AccountState.ACTIVE) | reprobe
    )
    return list(rows.order_by("id").values_list("id", flat=True))
