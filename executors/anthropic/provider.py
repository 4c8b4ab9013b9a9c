"""Anthropic API accounts as the rest of the proxy sees them (apps.AnthropicApp.ready)."""

from __future__ import annotations

from accounts.providers import API_KEY_CREDENTIALS
from executors.anthropic import KIND, executor, flows
from executors.registry import provider_spec

# "Test now" and "Refresh now" are the registry's defaults: a 1-token request through the
# executor, and nothing to refresh for a static key.
PROVIDER = provider_spec(
    kind=KIND, label="Anthropic API key", executor=executor.EXECUTOR, flows=(flows.AnthropicApiKeyFlow,),
    credential_kinds=API_KEY_CREDENTIALS,
)  # fmt: skip
