"""Hot-path reads of keys and accounts, cached per process.

No database query per request in steady state: a process keeps its copy for
PROXY_CACHE_TTL_SECONDS and drops it early when the shared version counter (bumped by every
service that changes keys or accounts) moves; the counter is read at most once per
PROXY_VERSION_CHECK_SECONDS.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings

from accounts.models import AccountState, ClientKey, UpstreamAccount
from accounts.services import CACHE_VERSION_KEY, client_key_hash
from proxy_project.db import db_call
from statestore import StoreUnavailable, get_store

_NEGATIVE_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    enabled: bool
    expires_at: float | None  # epoch seconds
    allowed_models: frozenset[str]  # empty = every model
    # Limits (None = unlimited), enforced by routing.limits.
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    budget_tokens: int | None = None
    budget_period: str = "month"

    def allows(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    def usable(self, now: float) -> bool:
        return self.enabled and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: int
    label: str
    provider: str
    base_url: str
    priority: int
    weight: int
    model_names: tuple[str, ...]
    state: str
    secret: dict[str, Any]
    provider_config: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the secret
        return f"AccountInfo(id={self.id}, label={self.label!r}, provider={self.provider!r})"


class _Caches:
    def __init__(self) -> None:
        self.keys: OrderedDict[str, tuple[KeyInfo | None, float]] = OrderedDict()
        self.accounts: tuple[list[AccountInfo], float] | None = None
        self.version: bytes | None = None
        self.version_checked_at = 0.0
        # Bumped on every clear so caches in other modules (the routing catalog) follow.
        self.generation = 0

    def clear(self) -> None:
        self.keys.clear()
        self.accounts = None
        self.generation += 1


_caches = _Caches()


def cache_generation() -> int:
    return _caches.generation


def caches_clear() -> None:
    _caches.clear()
    _caches.version = None
    _caches.version_checked_at = 0.0


async def _check_version(now: float) -> None:
    if now - _caches.version_checked_at < settings.PROXY_VERSION_CHECK_SECONDS:
        return
    _caches.version_checked_at = now
    try:
        version = await get_store().get(CACHE_VERSION_KEY)
    except StoreUnavailable:
        # Fail open: keep serving from the caches; they still expire after the TTL, so a
        # change made during the outage applies within PROXY_CACHE_TTL_SECONDS.
        return
    if version != _caches.version:
        _caches.clear()
        _caches.version = version


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


async def client_key_lookup(raw_key: str) -> KeyInfo | None:
    """The key's info, or None for a key that does not exist (enabled/expiry checked by caller)."""
    now = time.monotonic()
    await _check_version(now)
    digest = client_key_hash(raw_key)
    hit = _caches.keys.get(digest)
    if hit is not None and now - hit[1] < settings.PROXY_CACHE_TTL_SECONDS:
        return hit[0]
    row = await db_call(ClientKey.objects.filter(key_hash=digest).first)
    info = (
        None
        if row is None
        else KeyInfo(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            enabled=row.enabled,
            expires_at=_epoch(row.expires_at),
            allowed_models=frozenset(row.allowed_models or ()),
            requests_per_minute=row.requests_per_minute,
            tokens_per_day=row.tokens_per_day,
            budget_tokens=row.budget_tokens,
            budget_period=row.budget_period,
        )
    )
    _caches.keys[digest] = (info, now)
    _caches.keys.move_to_end(digest)
    # Bounded: random invalid keys must not grow memory without limit.
    while len(_caches.keys) > _NEGATIVE_CACHE_MAX:
        _caches.keys.popitem(last=False)
    return info


def account_info_from_row(row: UpstreamAccount) -> AccountInfo:
    """The routing view of one account row (every field, provider_config included): the one
    place that builds an AccountInfo, so a probe and a real request see the same settings."""
    credential = getattr(row, "credential", None)
    return AccountInfo(
        id=row.id,
        label=row.label,
        provider=row.provider,
        base_url=row.base_url,
        priority=row.priority,
        weight=row.weight,
        model_names=tuple(row.model_names or ()),
        state=row.state,
        secret=dict(credential.secret) if credential is not None else {},
        provider_config=dict(row.provider_config or {}),
    )


def _load_accounts() -> list[AccountInfo]:
    rows = UpstreamAccount.objects.filter(enabled=True).select_related("credential")
    return [account_info_from_row(row) for row in rows]


async def accounts_enabled() -> list[AccountInfo]:
    """Enabled accounts with decrypted credentials, highest priority first."""
    now = time.monotonic()
    await _check_version(now)
    cached = _caches.accounts
    if cached is not None and now - cached[1] < settings.PROXY_CACHE_TTL_SECONDS:
        return cached[0]
    accounts = await db_call(_load_accounts)
    _caches.accounts = (accounts, now)
    return accounts


def account_usable(account: AccountInfo) -> bool:
    return account.state == AccountState.ACTIVE


def account_info_reload(account_id: int) -> AccountInfo | None:
    """Fresh from the database (after a credential refresh), bypassing the cache."""
    for account in _load_accounts():
        if account.id == account_id:
            return account
    return None
