"""Which flows exist: `executors/<provider>/flows.py` modules found by name."""

from __future__ import annotations

import logging
from functools import cache
from importlib import import_module

from accounts.flows.base import AccountFlow
from accounts.models import ProviderKind

log = logging.getLogger(__name__)

def _candidate_modules() -> list[str]:
    return [f"executors.{provider}.flows" for provider in ProviderKind.values]


@cache
def flows_all() -> dict[str, type[AccountFlow]]:
    found: dict[str, type[AccountFlow]] = {}
    for name in _candidate_modules():
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            # Only "this provider has no flows module yet" is expected; a broken import
            # inside an existing module must surface.
            if exc.name and name.startswith(exc.name):
                continue
            raise
        for flow in getattr(module, "FLOWS", ()):
            if flow.key in found:
                raise RuntimeError(f"two account flows use the key {flow.key!r}")
            found[flow.key] = flow
    return found


def flows_by_provider() -> dict[str, list[type[AccountFlow]]]:
    """Every provider kind, with its flows (an empty list = not available yet)."""
    out: dict[str, list[type[AccountFlow]]] = {p: [] for p in ProviderKind.values}
    for flow in flows_all().values():
        out.setdefault(flow.provider, []).append(flow)
    return out


def flow_get(key: str) -> type[AccountFlow] | None:
    return flows_all().get(key)
