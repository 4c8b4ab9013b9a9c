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


async def selection_order(store: StateStore, resolution: Resolution, *, preferred_account: int | None) -> list[Target]:
    ordered: list[Target] = []
    by_tier = sorted(resolution.targets, key=lambda t: -t.account.priority)
    for tier, group in groupby(by_tier, key=lambda t: t.account.priority):
        ordered.extend(await _order_tier(store, resolution, tier, list(group)))
    if preferred_account is not None:
        bound = [t for t in ordered if t.account.id == preferred_account]
        ordered = bound + [t for t in ordered if t.account.id != preferred_account]
    return ordered


async def selection_used(store: StateStore, resolution: Resolution, target: Target) -> None:
    if resolution.strategy == Strategy.LEAST_RECENT:
        await store.set(f"lru:{target.account.id}", str(time.time()).encode(), ttl=86400)
