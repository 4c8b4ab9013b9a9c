"""Providers as routing sees them: the executor of an account's provider kind.

Providers register themselves (accounts.providers, from their AppConfig.ready()); routing
looks executors up by the account's provider and never branches on provider names.
"""

from __future__ import annotations

from typing import Any

from accounts.providers import Provider, provider_get
from executors.base import Executor
from executors.probe import executor_probe, executor_refresh


def provider_spec(*, kind: str, label: str, executor: Executor, **extras: Any) -> Provider:
    """A Provider whose "Test now" and (unless given) "Refresh now" go through its executor."""
    extras.setdefault("probe", executor_probe(executor))
    extras.setdefault("refresh", executor_refresh(executor))
    return Provider(kind=kind, label=label, executor=executor, **extras)


def executor_for(provider: str) -> Executor | None:
    spec = provider_get(provider)
    return None if spec is None else spec.executor


def provider_billing(provider: str) -> str:
    """ "metered" or "subscription" (see Executor.billing); unknown providers count as metered."""
    executor = executor_for(provider)
    return getattr(executor, "billing", "metered") if executor is not None else "metered"
