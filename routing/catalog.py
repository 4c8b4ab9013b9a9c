"""Model catalog: which (account, upstream model) pairs can serve a client's model name.

Sources, merged without churning the names clients use:
- each account's `model_names` (configured or discovered upstream models, and aliases an
  executor maps itself);
- admin aliases (`CatalogEntry.targets`) resolving a stable name to upstream models in order;
- per-account prefixes (`provider_config["model_prefix"]`, e.g. `team-b/gpt-4.1`) that pin
  a request to one account;
- facts per model or family (responses-only, WebSocket preference, context window): each
  provider's defaults (accounts.providers), overridable by catalog entries.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.providers import provider_get
from accounts.selectors import AccountInfo, account_usable, accounts_enabled, cache_generation
from executors.base import ModelFacts
from infra.db import db_call
from infra.singleflight import SingleFlight
from routing.models import CatalogEntry, Strategy

_DATED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-preview)$")


def model_family(name: str) -> str:
    """`openai/gpt-5.5-2026-04-23` → `gpt-5.5`: provider path and date/tag suffixes removed."""
    base = name.rsplit("/", 1)[-1]
    while True:
        stripped = _DATED.sub("", base)
        if stripped == base:
            return base
        base = stripped


@dataclass(frozen=True, slots=True)
class Target:
    account: AccountInfo
    upstream_model: str
    facts: ModelFacts

    @property
    def family(self) -> str:
        return model_family(self.upstream_model)


@dataclass(frozen=True, slots=True)
class Resolution:
    name: str
    targets: list[Target]
    strategy: str


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    targets: tuple[str, ...]
    strategy: str
    facts: dict[str, Any]
    listed: bool


class _CatalogCache:
    entries: dict[str, _Entry] | None = None
    loaded_at = 0.0
    generation = -1


_cache = _CatalogCache()
_flight: SingleFlight[dict[str, _Entry]] = SingleFlight()


def _load_entries() -> dict[str, _Entry]:
    result = {}
    for row in CatalogEntry.objects.filter(enabled=True):
        facts = {
            k: v
            for k, v in (
                ("responses_only", row.responses_only),
                ("prefer_websockets", row.prefer_websockets),
                ("context_window", row.context_window),
            )
            if v is not None
        }
        result[row.name] = _Entry(row.name, tuple(row.targets or ()), row.strategy, facts, row.listed)
    return result


async def _entries() -> dict[str, _Entry]:
    now = time.monotonic()
    generation = cache_generation()
    if (
        _cache.entries is None
        or generation != _cache.generation
        or now - _cache.loaded_at > settings.PROXY_CACHE_TTL_SECONDS
    ):
        # One query for a burst of requests (infra/singleflight.py).
        return await _flight.run(generation, lambda: _entries_load(now, generation))
    return _cache.entries


async def _entries_load(now: float, generation: int) -> dict[str, _Entry]:
    entries = await db_call(_load_entries)
    _cache.entries, _cache.loaded_at, _cache.generation = entries, now, generation
    return entries


def catalog_cache_clear() -> None:
    _cache.entries = None


def _facts(name: str, entries: dict[str, _Entry], provider: str) -> ModelFacts:
    """The provider's defaults for the model's family, then admin catalog entries on top."""
    family = model_family(name)
    spec = provider_get(provider)
    merged: dict[str, Any] = dict(spec.model_facts.get(family, {})) if spec is not None else {}
    for key in (family, name):  # the exact name wins over its family
        entry = entries.get(key)
        if entry is not None:
            merged.update(entry.facts)
    return ModelFacts(**merged)


def _prefix_of(account: AccountInfo) -> str | None:
    prefix = account.provider_config.get("model_prefix") if account.provider_config else None
    return prefix.strip("/") if isinstance(prefix, str) and prefix.strip("/") else None


async def catalog_resolve(model: str) -> Resolution:
    """Every usable (account, upstream model) for `model`, alias order first, then priority."""
    accounts = [a for a in await accounts_enabled() if account_usable(a)]
    entries = await _entries()
    head, sep, rest = model.partition("/")
    if sep:
        pinned = [a for a in accounts if _prefix_of(a) == head]
        if pinned:
            return Resolution(
                model,
                [Target(a, rest, _facts(rest, entries, a.provider)) for a in pinned if rest in a.model_names],
                Strategy.FILL_FIRST,
            )
    entry = entries.get(model)
    names = list(entry.targets) if entry is not None and entry.targets else [model]
    targets = [Target(a, n, _facts(n, entries, a.provider)) for n in names for a in accounts if n in a.model_names]
    return Resolution(model, targets, entry.strategy if entry is not None else Strategy.ROUND_ROBIN)


async def catalog_models() -> list[str]:
    """Client-visible names: served models, aliases with a served target, prefixed names."""
    accounts = [a for a in await accounts_enabled() if account_usable(a)]
    entries = await _entries()
    served: set[str] = set()
    names: set[str] = set()
    for account in accounts:
        served.update(account.model_names)
        names.update(account.model_names)
        prefix = _prefix_of(account)
        if prefix:
            names.update(f"{prefix}/{m}" for m in account.model_names)
    for entry in entries.values():
        if entry.targets and entry.listed and any(t in served for t in entry.targets):
            names.add(entry.name)
    return sorted(names)
