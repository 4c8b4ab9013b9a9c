"""Which flows exist: each registered provider's `flows` (accounts.providers)."""

from __future__ import annotations

from accounts.flows.base import AccountFlow
from accounts.providers import providers_all


def flows_all() -> dict[str, type[AccountFlow]]:
    found: dict[str, type[AccountFlow]] = {}
    for provider in providers_all():
        for flow in provider.flows:
            if flow.key in found:
                raise RuntimeError(f"two account flows use the key {flow.key!r}")
            found[flow.key] = flow
    return found


def flows_by_provider() -> dict[str, list[type[AccountFlow]]]:
    """Every registered provider kind, with its flows (an empty list = none yet)."""
    return {p.kind: list(p.flows) for p in providers_all()}


def flow_get(key: str) -> type[AccountFlow] | None:
    return flows_all().get(key)
