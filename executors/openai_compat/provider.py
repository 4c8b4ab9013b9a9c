"""OpenAI-compatible API accounts as the rest of the proxy sees them (apps.OpenAICompatApp.ready)."""

from __future__ import annotations

from accounts.providers import API_KEY_CREDENTIALS
from executors.openai_compat import KIND
from executors.openai_compat.executor import EXECUTOR
from executors.openai_compat.flows import FLOWS
from executors.registry import provider_spec

PROVIDER = provider_spec(
    kind=KIND,
    label="OpenAI-compatible API key",
    executor=EXECUTOR,
    credential_kinds=API_KEY_CREDENTIALS,
    flows=tuple(FLOWS),
    # HTTP /chat/completions rejects the gpt-5.5 family: those models go to {base}/responses.
    model_facts={"gpt-5.5": {"responses_only": True}},
)
