"""GitLab Duo models as data: the AI gateway's proxy allow-list, stable aliases, admin overrides.

The gateway lists nothing on its proxy paths (docs/protocols/gitlab-duo.md#models), so the allow-list is kept here
and each entry carries its provider path; routing by provider (not by name substrings,
docs/protocols/gitlab-duo.md#models)
keeps a `duo-chat-opus-*` alias off the OpenAI gateway. Admins adjust it per account through
`provider_config` (all keys optional):

    {"models": {"add": {"claude-opus-6": "anthropic"}, "remove": ["gpt-5"]},
     "aliases": {"gitlab-duo": "claude-opus-4-7"},
     "fallback_models": ["gitlab-duo-code"]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ANTHROPIC = "anthropic"
OPENAI = "openai"
PROVIDERS = (ANTHROPIC, OPENAI)

# docs/protocols/gitlab-duo.md#models (AI gateway models.yml entries with proxy_provider, Aug 2026).
ALLOW_LIST: dict[str, str] = {
    "claude-opus-4-5-20251101": ANTHROPIC,
    "claude-opus-4-6": ANTHROPIC,
    "claude-opus-4-7": ANTHROPIC,
    "claude-opus-4-8": ANTHROPIC,
    "claude-opus-5": ANTHROPIC,
    "claude-sonnet-5": ANTHROPIC,
    "claude-sonnet-4-6": ANTHROPIC,
    "claude-sonnet-4-5-20250929": ANTHROPIC,
    "claude-haiku-4-5-20251001": ANTHROPIC,
    "claude-fable-5": ANTHROPIC,
    "gpt-5.6-sol": OPENAI,
    "gpt-5.6-terra": OPENAI,
    "gpt-5.6-luna": OPENAI,
    "gpt-5.5-2026-04-23": OPENAI,
    "gpt-5.4-2026-03-05": OPENAI,
    "gpt-5.4-mini": OPENAI,
    "gpt-5.4-nano": OPENAI,
    "gpt-5.3-codex": OPENAI,
    "gpt-5.2-2025-12-11": OPENAI,
    "gpt-5.1-2025-11-13": OPENAI,
    "gpt-5-mini-2025-08-07": OPENAI,
    "gpt-5": OPENAI,
    "gpt-5.1": OPENAI,
}

# Stable names clients can keep in their configuration while the allow-list churns
# (docs/protocols/gitlab-duo.md#models).
# `gitlab-duo` is the gateway's default chat model; the third-party `duo-chat-*` names are
# accepted because existing client configs use them (`duo-chat-gpt-5-codex` is left out: its
# target is not on the allow-list and would only ever produce 400 "Unsupported model").
DEFAULT_ALIASES: dict[str, str] = {
    "gitlab-duo": "claude-sonnet-4-6",
    "gitlab-duo-claude": "claude-sonnet-4-6",
    "gitlab-duo-gpt": "gpt-5.1",
    "duo-chat-opus-4-5": "claude-opus-4-5-20251101",
    "duo-chat-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "duo-chat-haiku-4-5": "claude-haiku-4-5-20251001",
    "duo-chat-gpt-5-1": "gpt-5.1-2025-11-13",
    "duo-chat-gpt-5-mini": "gpt-5-mini-2025-08-07",
}

# Name served by the lossy instance code-suggestions fallback when an account enables it.
FALLBACK_MODEL = "gitlab-duo-code"


def _config_models(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    models = (config or {}).get("models")
    return models if isinstance(models, Mapping) else {}


def gitlab_allow_list(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """model -> provider path ("anthropic" | "openai"), after the account's overrides."""
    allowed = dict(ALLOW_LIST)
    overrides = _config_models(config)
    add = overrides.get("add")
    if isinstance(add, Mapping):
        for name, provider in add.items():
            if isinstance(name, str) and provider in PROVIDERS:
                allowed[name] = str(provider)
    for name in overrides.get("remove") or ():
        allowed.pop(name, None)
    return allowed


def gitlab_aliases(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    aliases = dict(DEFAULT_ALIASES)
    extra = (config or {}).get("aliases")
    if isinstance(extra, Mapping):
        aliases.update({str(k): str(v) for k, v in extra.items() if isinstance(v, str)})
    return aliases


def gitlab_upstream_model(name: str, config: Mapping[str, Any] | None = None) -> str:
    """The gateway model id for `name` (an alias or already an upstream id)."""
    aliases = gitlab_aliases(config)
    seen: set[str] = set()
    # Aliases may point at aliases (an admin re-pointing `gitlab-duo` at `gitlab-duo-gpt`).
    while name in aliases and name not in seen:
        seen.add(name)
        name = aliases[name]
    return name


def gitlab_model_provider(model: str, config: Mapping[str, Any] | None = None) -> str | None:
    """Provider path of an upstream model id; None when it is not on the allow-list."""
    return gitlab_allow_list(config).get(model)


def gitlab_fallback_models(config: Mapping[str, Any] | None = None) -> frozenset[str]:
    """Names this account serves through the instance fallback (explicit opt-in only)."""
    names = (config or {}).get("fallback_models") or ()
    return frozenset(str(n) for n in names)


def gitlab_model_names(config: Mapping[str, Any] | None = None) -> list[str]:
    """Everything routing should send to this account: allowed ids, aliases, fallback names."""
    allowed = gitlab_allow_list(config)
    names = set(allowed)
    for alias in gitlab_aliases(config):
        if gitlab_upstream_model(alias, config) in allowed:
            names.add(alias)
    names |= gitlab_fallback_models(config)
    return sorted(names)
