"""The outbound Codex request: body rules (docs/protocols/codex.md#request-body-rules,
docs/protocols/translation.md#rejected-or-dropped) and the header set
rebuilt from scratch with the official CLI's fingerprint (docs/protocols/codex.md#request-fingerprint,
docs/protocols/codex.md#identity)."""

from __future__ import annotations

import logging
from typing import Any

from executors.codex.config import CodexConfig
from executors.codex.identity import Identity
from formats import UnsupportedFeature

log = logging.getLogger(__name__)

# The backend answers `400 Unsupported parameter: <name>` for these; they are hints or
# caps the Codex backend does not honour, so they are dropped (peers strip them too).
DROPPED = frozenset(
    {
        "max_output_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "top_k",
        "user",
        "metadata",
        "prompt_cache_retention",
        "safety_identifier",
        "stream_options",
        "truncation",
        "context_management",
        "generate",
        "max_tool_calls",
    }
)
# Fields the backend accepts (what the CLI sends). Anything else is rejected with a 400
# naming the field rather than forwarded into an upstream 400 or silently dropped.
ACCEPTED = frozenset(
    {
        "model",
        "instructions",
        "input",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "store",
        "stream",
        "include",
        "service_tier",
        "prompt_cache_key",
        "text",
        "client_metadata",
    }
)
_REJECT_REASONS = {
    "previous_response_id": "must be expanded by the proxy before reaching a Codex account",
    "top_logprobs": "log-probabilities are not available on Codex accounts",
    "background": "background responses are not available on Codex accounts",
    "conversation": "server-side conversations are not available on Codex accounts",
    "prompt": "stored prompt templates are not available on Codex accounts",
    "stop": "the Codex backend has no stop sequences",
}
ENCRYPTED_REASONING = "reasoning.encrypted_content"


def has_compaction_trigger(body: dict[str, Any]) -> bool:
    items = body.get("input")
    return isinstance(items, list) and any(isinstance(i, dict) and i.get("type") == "compaction_trigger" for i in items)


def codex_body(body: dict[str, Any], *, default_instructions: str) -> dict[str, Any]:
    """Apply the backend's body rules to a Responses body (identity fields come later).

    `default_instructions` is sent only when the caller gave no system text at all: neither
    `instructions` nor a developer/system item (the backend refuses such a request)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in DROPPED:
            log.debug("codex: dropping %s (the backend rejects it)", key)
            continue
        if key in _REJECT_REASONS:
            if key == "top_logprobs" and not value:
                continue
            if key in ("background", "stop") and not value:
                continue
            raise UnsupportedFeature(key, _REJECT_REASONS[key])
        if key not in ACCEPTED:
            raise UnsupportedFeature(key, "this field is not supported on Codex accounts")
        out[key] = value
    include = out.get("include")
    if isinstance(include, list) and any(isinstance(x, str) and "logprobs" in x for x in include):
        raise UnsupportedFeature("include", "log-probabilities are not available on Codex accounts")

    # Conversation state stays in the proxy (snapshots); the backend insists on both
    # (docs/protocols/codex.md#request-body-rules).
    out["store"] = False
    out["stream"] = True
    if not out.get("instructions"):
        out.pop("instructions", None)  # the CLI sends none; an empty string only adds noise
    if out.get("service_tier") not in (None, "priority"):
        out.pop("service_tier")  # only "priority" ("Fast") is a Codex tier
    if out.get("reasoning") is not None:
        inc = [x for x in (include if isinstance(include, list) else []) if isinstance(x, str)]
        if ENCRYPTED_REASONING not in inc:
            inc.append(ENCRYPTED_REASONING)  # reasoning replay needs the blob with store=false
        out["include"] = inc
    tools = out.get("tools")
    if isinstance(tools, list):
        out["tools"] = [_tool(t) for t in tools]
    if not out.get("tools"):
        out.pop("tools", None)
        out.pop("parallel_tool_calls", None)  # meaningless without tools; CLIProxyAPI drops it
        if out.get("tool_choice") in ("auto", "none"):
            out.pop("tool_choice")
    items = out.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}]
    if isinstance(items, list):
        # A `compaction_trigger` item goes out as sent: it is what asks the backend to compact
        # (the CLI appends it to the input on the wire; docs/protocols/compaction.md).
        out["input"] = [_item(i) for i in items]
    if "instructions" not in out and not _has_developer_item(out.get("input")):
        # Keep what the caller sent (the official CLI's prompt travels as developer items);
        # add a neutral prompt only when there is none at all.
        out["instructions"] = default_instructions
    return out


# What the CLI's compaction input carries (openai/codex codex-api `CompactionInput`): the
# /responses body without streaming, storage, includes or client metadata.
COMPACT_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "parallel_tool_calls",
        "reasoning",
        "service_tier",
        "prompt_cache_key",
        "text",
    }
)


def codex_compact_body(body: dict[str, Any], *, default_instructions: str) -> dict[str, Any]:
    """The `/responses/compact` body: the /responses rules, then only the compaction fields."""
    full = codex_body(body, default_instructions=default_instructions)
    return {k: v for k, v in full.items() if k in COMPACT_FIELDS}


def _has_developer_item(items: Any) -> bool:
    return isinstance(items, list) and any(
        isinstance(i, dict) and i.get("role") == "developer" and i.get("type", "message") == "message" for i in items
    )


def _tool(tool: Any) -> Any:
    if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search_preview"):
        return {**tool, "type": "web_search"}
    return tool


def _item(item: Any) -> Any:
    if isinstance(item, dict) and item.get("role") == "system" and item.get("type", "message") == "message":
        return {**item, "role": "developer"}  # the backend takes instructions or developer items
    return item


def apply_identity(body: dict[str, Any], ident: Identity) -> dict[str, Any]:
    body["client_metadata"] = ident.client_metadata
    if not body.get("prompt_cache_key"):
        body["prompt_cache_key"] = ident.thread_id  # the prompt cache keys on the thread
    return body


def codex_headers(
    cfg: CodexConfig,
    *,
    access_token: str,
    chatgpt_account_id: str,
    ident: Identity,
    fedramp: bool = False,
    compact: bool = False,
) -> dict[str, str]:
    """A fresh header set: nothing from the caller is forwarded except resolved identity."""
    headers = {
        "authorization": f"Bearer {access_token}",
        "originator": cfg.originator,
        "user-agent": cfg.user_agent,
        "accept": "text/event-stream",
        "content-type": "application/json",
        "session-id": ident.session_id,
        "thread-id": ident.thread_id,
        "x-client-request-id": ident.client_request_id,
        "x-codex-window-id": ident.window_id,
        "x-codex-turn-metadata": ident.turn_metadata_header(),
    }
    if chatgpt_account_id:
        headers["chatgpt-account-id"] = chatgpt_account_id  # omitted rather than sent empty
    if fedramp:
        headers["x-openai-fedramp"] = "true"
    if cfg.beta_features:
        headers["x-codex-beta-features"] = cfg.beta_features
    headers.update(ident.extra_headers)
    if compact:
        # Unary JSON; the installation id travels as a header on this path only.
        headers["accept"] = "application/json"
        headers["x-codex-installation-id"] = ident.installation_id
    # A compressed stream would sit in the decompressor's buffer: ask for identity.
    headers["accept-encoding"] = "identity"
    return headers
