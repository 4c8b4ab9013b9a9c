"""Order the catalog's targets for one request: priority tiers, then the entry's strategy,
with the conversation's bound account first. Cooling targets are skipped by dispatch."""

from __future__ import annotations

import random
import time
from itertools import groupby

from routing.catalog import Resolution, Target
from routing.models import Strategy
from statestore import StateStore


def _weighted_shuffle(targets: list[Target]) -> list[Target]:
    # Efraimidis-Spirakis: sort by u^(1/w); P(first) is proportional to weight.
    return sorted(targets, key=lambda t: random.random() ** (1.0 / max(1, t.account.weight)), reverse=True)


async def _order_tier(store: StateStore, resolution: Resolution, tier: int, targets: list[Target]) -> list[Target]:
    if len(targets) < 2:
        return targets
    strategy = resolution.strategy
    if strategy == Strategy.FILL_FIRST:
        return sorted(targets, key=lambda t: t.account.id)
    if strategy == Strategy.WEIGHTED:
        return _weighted_shuffle(targets)
    if strategy == Strategy.LEAST_RECENT:
        stamps = await store.get_many([f"lru:{t.account.id}" for t in targets])
        return [t for _, t in sorted(zip((float(s or 0) for s in stamps), targets, strict=True), key=lambda p: p[0])]
    # Round robin across processes: a shared counter per (name, tier).
    turn = await store.incr(f"rr:{resolution.name}:{tier}")
    start = turn % len(targets)
    return targets[start:] + targets[:start]


# Accounts whose quota window is nearly spent go last in their tier for new sessions.
LOW_HEADROOM = 0.2


async def selection_order(
    store: StateStore,
    resolution: Resolution,
    *,
    preferred_account: int | None,
    headroom: dict[int, float] | None = None,
) -> list[Target]:
    if preferred_account is not None and any(t.account.id == preferred_account for t in resolution.targets):
        # A bound conversation does not take a strategy turn (and costs no state write): the
        # rotation stays fair for the traffic that actually rotates.
        by_priority = sorted(resolution.targets, key=lambda t: (t.account.id != preferred_account, -t.account.priority))
        return by_priority
    ordered: list[Target] = []
    by_tier = sorted(resolution.targets, key=lambda t: -t.account.priority)
    for tier, group in groupby(by_tier, key=lambda t: t.account.priority):
        tier_order = await _order_tier(store, resolution, tier, list(group))
        if headroom:
            # Stable: the strategy's order holds among accounts with headroom.
            tier_order.sort(key=lambda t: headroom.get(t.account.id, 1.0) < LOW_HEADROOM)
        ordered.extend(tier_order)
    return ordered


async def selection_used(store: StateStore, resolution: Resolution, target: Target) -> None:
    if resolution.strategy == Strategy.LEAST_RECENT:
        await store.set(f"lru:{target.account.id}", str(time.time()).encode(), ttl=86400)
