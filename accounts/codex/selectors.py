"""Hot-path reads for the Codex executor, cached per process.

AccountInfo (accounts.selectors) carries the decrypted credential but not provider_config;
the executor needs the latter for per-account fingerprint settings. One small query per
account per PROXY_CACHE_TTL_SECONDS keeps the hot path free of database reads.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from accounts.models import UpstreamAccount
from proxy_project.db import db_call

# Keyed by (account id, installation id): the installation id is random per account row, so a
# reused primary key (tests, a deleted and re-created account) never hits a stale entry.
_config_cache: dict[tuple[int, str], tuple[dict[str, Any], float]] = {}


def _read(account_id: int) -> dict[str, Any]:
    row = UpstreamAccount.objects.filter(id=account_id).values_list("provider_config", flat=True).first()
    return dict(row or {})


async def codex_provider_config(*, account_id: int, installation_id: str) -> dict[str, Any]:
    key = (account_id, installation_id)
    now = time.monotonic()
    hit = _config_cache.get(key)
    if hit is not None and now - hit[1] < settings.PROXY_CACHE_TTL_SECONDS:
        return hit[0]
    config = await db_call(_read, account_id)
    _config_cache[key] = (config, now)
    return config


def codex_caches_clear() -> None:
    _config_cache.clear()
