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

from accounts.models import AccountState, ClientKey, Team, UpstreamAccount
from accounts.services import CACHE_VERSION_KEY, client_key_hash
from infra.db import db_call
from infra.singleflight import SingleFlight
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
    # Effective limits (None = unlimited): the stricter of the key's and its team's, enforced
    # by state.limits.
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    budgets: tuple[tuple[int, str], ...] = ()  # (tokens, period), at most one per period
    team_id: int | None = None
    team_models: frozenset[str] = frozenset()  # the team's allow-list; empty = every model

    def allows(self, model: str) -> bool:
        # Both lists apply: a key can narrow its team's models, never widen them.
        return (not self.allowed_models or model in self.allowed_models) and (
            not self.team_models or model in self.team_models
        )

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
_key_flight: SingleFlight[KeyInfo | None] = SingleFlight()
_accounts_flight: SingleFlight[list[AccountInfo]] = SingleFlight()


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


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """What a key may do once its team's settings are applied (None = unlimited)."""

    requests_per_minute: int | None
    tokens_per_day: int | None
    budgets: tuple[tuple[int, str], ...]  # (tokens, period), sorted by period
    allowed_models: frozenset[str]  # the key's own list (empty = no own restriction)
    team_models: frozenset[str]  # the team's list (empty = no team restriction)

    def models_label(self) -> str:
        if self.allowed_models and self.team_models:
            both = sorted(self.allowed_models & self.team_models)
            return ", ".join(both) or "none (the key's and the team's lists do not overlap)"
        return ", ".join(sorted(self.allowed_models or self.team_models)) or "every model"


def keys_scope_all(user: Any) -> bool:
    """Whether an admin user sees every developer's keys, or only the ones they own."""
    return bool(user.is_superuser or user.has_perm("accounts.view_all_keys"))


def _stricter(own: int | None, team: int | None) -> int | None:
    if own is None:
        return team
    return own if team is None else min(own, team)


def key_limits_effective(key: ClientKey, team: Team | None = None) -> EffectiveLimits:
    """A key's limits with its team's applied: the stricter value wins, lists intersect.

    Budgets of different periods both apply (a key with 1 M tokens a month in a team with
    100 k a day gets both); of the same period, the smaller one.
    """
    team = team if team is not None else (key.team if key.team_id else None)
    budgets: dict[str, int] = {}
    for tokens, period in (
        (key.budget_tokens, key.budget_period),
        (team.budget_tokens, team.budget_period) if team else (None, ""),
    ):
        if tokens is not None:
            budgets[period] = _stricter(budgets.get(period), tokens) or 0
    return EffectiveLimits(
        requests_per_minute=_stricter(key.requests_per_minute, team.requests_per_minute if team else None),
        tokens_per_day=_stricter(key.tokens_per_day, team.tokens_per_day if team else None),
        budgets=tuple(sorted((t, p) for p, t in budgets.items())),
        allowed_models=frozenset(key.allowed_models or ()),
        team_models=frozenset(team.allowed_models or ()) if team else frozenset(),
    )


def key_info_from_row(row: ClientKey) -> KeyInfo:
    """The hot-path view of a key row (its team loaded or loadable), with effective limits."""
    limits = key_limits_effective(row)
    return KeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        enabled=row.enabled,
        expires_at=_epoch(row.expires_at),
        allowed_models=limits.allowed_models,
        requests_per_minute=limits.requests_per_minute,
        tokens_per_day=limits.tokens_per_day,
        budgets=limits.budgets,
        team_id=row.team_id,
        team_models=limits.team_models,
    )


async def client_key_lookup(raw_key: str) -> KeyInfo | None:
    """The key's info, or None for a key that does not exist (enabled/expiry checked by caller)."""
    now = time.monotonic()
    await _check_version(now)
    digest = client_key_hash(raw_key)
    hit = _caches.keys.get(digest)
    if hit is not None and now - hit[1] < settings.PROXY_CACHE_TTL_SECONDS:
        return hit[0]
    # One query for a burst of requests with this key (infra/singleflight.py).
    return await _key_flight.run((digest, _caches.generation), lambda: _key_load(digest, now))


async def _key_load(digest: str, now: float) -> KeyInfo | None:
    generation = _caches.generation
    row = await db_call(ClientKey.objects.select_related("team").filter(key_hash=digest).first)
    info = None if row is None else key_info_from_row(row)
    if generation != _caches.generation:
        return info  # cleared while loading: a newer load fills the cache
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
    return await _accounts_flight.run(_caches.generation, lambda: _accounts_load(now))


async def _accounts_load(now: float) -> list[AccountInfo]:
    generation = _caches.generation
    accounts = await db_call(_load_accounts)
    if generation == _caches.generation:  # else cleared while loading: a newer load fills it
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
