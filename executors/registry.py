"""Provider kind → executor. The only place that knows which executors exist.

Each provider registers one line here; routing looks executors up by the account's provider
and never branches on provider names.
"""

from __future__ import annotations

from importlib import import_module

from executors.base import Executor

# provider kind -> "module:attribute" of the executor instance (imported on first use)
_PATHS: dict[str, str] = {
    "openai_compat": "executors.openai_compat.executor:EXECUTOR",
    "gitlab": "executors.gitlab.executor:EXECUTOR",
    "codex": "executors.codex.executor:EXECUTOR",
}

_loaded: dict[str, Executor] = {}


def executor_for(provider: str) -> Executor | None:
    executor = _loaded.get(provider)
    if executor is None:
        path = _PATHS.get(provider)
        if path is None:
            return None
        module, _, attr = path.partition(":")
        executor = getattr(import_module(module), attr)
        _loaded[provider] = executor
    return executor


def provider_billing(provider: str) -> str:
    """"metered" or "subscription" (see Executor.billing); unknown providers count as metered."""
    executor = executor_for(provider)
    return getattr(executor, "billing", "metered") if executor is not None else "metered"
