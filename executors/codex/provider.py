"""OpenAI Codex as the rest of the proxy sees it (registered by apps.CodexApp.ready)."""

from __future__ import annotations

from executors.codex import KIND, CredentialKind
from executors.codex.admin import board_refresh
from executors.codex.executor import EXECUTOR
from executors.codex.flows import FLOWS
from executors.registry import provider_spec

# Models the backend serves over its responses WebSocket by preference (docs/codex.md).
_WEBSOCKET_FAMILIES = ("gpt-5.5", "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.4", "gpt-5.4-mini", "gpt-5.2")

PROVIDER = provider_spec(
    kind=KIND,
    label="OpenAI Codex (ChatGPT sign-in)",
    executor=EXECUTOR,
    credential_kinds={CredentialKind.CHATGPT: "ChatGPT sign-in"},
    flows=tuple(FLOWS),
    model_facts={family: {"prefer_websockets": True} for family in _WEBSOCKET_FAMILIES},
    periodic_tasks={
        "codex-refresh-ahead": {"task": "executors.codex.tasks.codex_refresh_due_task", "schedule": 900.0},
    },
    refresh=board_refresh,
)
