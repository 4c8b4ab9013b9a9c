"""Reads for GitLab accounts: the hot-path config view and the Celery refresh worklist."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from accounts.models import AccountState, UpstreamAccount
from accounts.selectors import AccountInfo
from executors.gitlab import KIND

# docs/protocols/gitlab-duo.md#errors: accounts refused for entitlement are re-probed every 6-24 h (a seat may be
# assigned later).
REPROBE_AFTER = timedelta(hours=6)


def gitlab_account_config(account: AccountInfo) -> dict[str, Any]:
    """provider_config of an account on the hot path (carried by the cached AccountInfo)."""
    return account.provider_config


def gitlab_account_ids_for_refresh() -> list[int]:
    """Enabled GitLab accounts whose gateway token should be kept warm (or re-probed)."""
    reprobe = Q(state=AccountState.NOT_ENTITLED) & (
        Q(last_error_at__isnull=True) | Q(last_error_at__lt=timezone.now() - REPROBE_AFTER)
    )
    rows = UpstreamAccount.objects.filter(provider=KIND, enabled=True).filter(Q(state=AccountState.ACTIVE) | reprobe)
    return list(rows.order_by("id").values_list("id", flat=True))
