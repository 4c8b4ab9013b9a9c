"""How one request reaches GitLab: a small transport strategy chosen per (account, model).

- GatewayTransport: the AI gateway's vendor proxy (docs/protocols/gitlab-duo.md#ai-gateway-proxy) — Anthropic Messages
for Claude models,
  OpenAI Chat Completions or Responses for GPT models. Native SSE passes through unchanged;
  `formats` translates the client's body only when its dialect differs.
- CodeSuggestionsFallback: the instance's code-suggestions endpoint (docs/protocols/gitlab-duo.md#instance-fallbacks),
text only, SSE
  mapped incrementally to Chat Completions chunks. Lossy; explicit opt-in per model.
- ChatRestFallback: the instance's /api/v4/chat/completions (docs/protocols/gitlab-duo.md#instance-fallbacks), where
an admin enabled it;
  non-streaming, ≤1000 characters. Lossy; explicit opt-in.

Everything a transport cannot carry is refused with formats.UnsupportedFeature naming the
field, never dropped silently (docs/protocols/gitlab-duo.md#instance-fallbacks).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from executors.base import CooldownScope, UpstreamCall, UpstreamError
from executors.gitlab.catalog import (
    ANTHROPIC,
    gitlab_fallback_models,
    gitlab_model_provider,
)
from executors.gitlab.grants import GatewayGrant
from formats import Dialect, SseEvent, UnsupportedFeature

USER_AGENT = "team-llm-proxy"
ANTHROPIC_VERSION = "2023-06-01"
# Header names the gateway grant must never override or add
# (docs/protocols/gitlab-duo.md#duo-entitlement-and-the-gateway-grant).
_NEVER_FORWARD = frozenset({"authorization", "x-api-key"})


@dataclass(frozen=True, slots=True)
class Prepared:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


def grant_headers(grant: GatewayGrant) -> dict[str, str]:
    """The grant's headers verbatim (minus credentials), plus what docs/protocols/gitlab-duo.md#ai-gateway-proxy
    requires if absent."""
    out = {k: v for k, v in grant.headers.items() if k.lower() not in _NEVER_FORWARD}
    present = {k.lower() for k in out}
    if "x-gitlab-authentication-type" not in present:
        out["X-Gitlab-Authentication-Type"] = "oidc"
    if "x-gitlab-unit-primitive" not in present:
        out["X-Gitlab-Unit-Primitive"] = "ai_gateway_model_provider_proxy"
    return out


class Transport:
    name: ClassVar[str]
    dialect: ClassVar[Dialect]  # dialect of the upstream payload
    lossy: ClassVar[bool] = False
    uses_gateway: ClassVar[bool] = True


class GatewayTransport(Transport):
    uses_gateway = True

    def __init__(self, name: str, dialect: Dialect, path: str) -> None:
        self.name = name  # type: ignore[misc]
        self.dialect = dialect  # type: ignore[misc]
        self.path = path

    def __repr__(self) -> str:
        return f"GatewayTransport({self.name})"

    def prepare(self, call: UpstreamCall, model: str, grant: GatewayGrant) -> Prepared:
        body = call.body_for(self.dialect)
        body["model"] = model
        if call.stream and self.dialect is Dialect.CHAT:
            # Always ask for usage so every request is accounted for; routing hides the chunk
            # from clients that did not ask.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = grant_headers(grant)
        headers.update(
            {
                "Authorization": f"Bearer {grant.token}",
                "Content-Type": "application/json",
                "Accept": "text/event-stream" if call.stream else "application/json",
            }
        )
        if call.stream:
            headers["Accept-Encoding"] = "identity"  # a compressor would buffer the stream
        if self.dialect is Dialect.MESSAGES:
            ch = call.client_headers
            headers["anthropic-version"] = ch.get("anthropic-version") or ANTHROPIC_VERSION
            if ch.get("anthropic-beta"):
                headers["anthropic-beta"] = ch["anthropic-beta"]
        else:
            # the OpenAI path forwards it (docs/protocols/gitlab-duo.md#ai-gateway-proxy)
            headers["User-Agent"] = USER_AGENT
        return Prepared(url=grant.gateway_url + self.path, headers=headers, body=body)


GATEWAY_MESSAGES = GatewayTransport("gateway:anthropic/messages", Dialect.MESSAGES, "/v1/proxy/anthropic/v1/messages")
GATEWAY_CHAT = GatewayTransport("gateway:openai/chat", Dialect.CHAT, "/v1/proxy/openai/v1/chat/completions")
GATEWAY_RESPONSES = GatewayTransport("gateway:openai/responses", Dialect.RESPONSES, "/v1/proxy/openai/v1/responses")


# ----------------------------------------------------------------------------- fallbacks


def _text_only_chat(call: UpstreamCall, path: str) -> list[tuple[str, str]]:
    """(role, text) pairs of a request that a text-only fallback can carry, else UnsupportedFeature."""
    body = call.body_for(Dialect.CHAT)
    for name in (
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
        "audio",
        "modalities",
        "prediction",
        "web_search_options",
        "logprobs",
        "n",
    ):
        if body.get(name) not in (None, [], {}) and not (name == "n" and body.get(name) == 1):
            raise UnsupportedFeature(name, f"the lossy GitLab fallback ({path}) carries plain text only")
    out: list[tuple[str, str]] = []
    for i, msg in enumerate(body.get("messages") or []):
        role = str(msg.get("role", "user"))
        if role in ("tool", "function") or msg.get("tool_calls"):
            raise UnsupportedFeature(f"messages[{i}]", f"tool calls and results cannot be carried by {path}")
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise UnsupportedFeature(f"messages[{i}].content[{j}]", f"{path} carries text only")
                parts.append(str(part.get("text", "")))
            content = "".join(parts)
        out.append((role, str(content or "")))
    if not out:
        raise UnsupportedFeature("messages", f"{path} needs at least one text message")
    return out


class CodeSuggestionsFallback(Transport):
    """POST {instance}/api/v4/code_suggestions/completions with the transcript as the file above
    the cursor (intent generation, small_file). Lossy: no tools, no images, no reasoning,
    usage is a local estimate."""

    name = "fallback:code_suggestions"
    dialect = Dialect.CHAT
    lossy = True
    uses_gateway = False

    def prepare(self, call: UpstreamCall, model: str, instance_url: str, token: str) -> Prepared:
        pairs = _text_only_chat(call, "code_suggestions")
        transcript = "\n\n".join(f"{role}: {text}" for role, text in pairs)
        last_user = next((t for r, t in reversed(pairs) if r == "user"), pairs[-1][1])
        body = {
            "current_file": {
                "file_name": "conversation.md",
                # docs/protocols/gitlab-duo.md#instance-fallbacks field limit
                "content_above_cursor": transcript[-400_000:],
                "content_below_cursor": "",
            },
            "intent": "generation",
            "generation_type": "small_file",
            "user_instruction": last_user[:600_000],
            "stream": call.stream,
        }
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if call.stream else "application/json",
            "User-Agent": USER_AGENT,
        }
        if call.stream:
            headers["X-Supports-Sse-Streaming"] = "true"
            headers["Accept-Encoding"] = "identity"
        return Prepared(url=f"{instance_url}/api/v4/code_suggestions/completions", headers=headers, body=body)


class ChatRestFallback(Transport):
    """POST {instance}/api/v4/chat/completions: a bare JSON string back, no streaming
    (docs/protocols/gitlab-duo.md#instance-fallbacks).
    Only where the instance enables it (FF access_rest_chat; 404 elsewhere)."""

    name = "fallback:chat_rest"
    dialect = Dialect.CHAT
    lossy = True
    uses_gateway = False
    MAX_CONTENT = 1000

    def prepare(self, call: UpstreamCall, model: str, instance_url: str, token: str) -> Prepared:
        if call.stream:
            raise UnsupportedFeature("stream", "the GitLab chat REST fallback cannot stream")
        pairs = _text_only_chat(call, "chat_rest")
        content = pairs[-1][1]
        if len(pairs) > 1 or len(content) > self.MAX_CONTENT:
            raise UnsupportedFeature(
                "messages", f"the GitLab chat REST fallback takes one message of at most {self.MAX_CONTENT} characters"
            )
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "User-Agent": USER_AGENT}
        return Prepared(url=f"{instance_url}/api/v4/chat/completions", headers=headers, body={"content": content})


CODE_SUGGESTIONS = CodeSuggestionsFallback()
CHAT_REST = ChatRestFallback()
_FALLBACKS: dict[str, Transport] = {"code_suggestions": CODE_SUGGESTIONS, "chat_rest": CHAT_REST}


def transport_for(call: UpstreamCall, model: str, config: Mapping[str, Any]) -> Transport:
    """The one place that decides the path for (account config, model, client dialect)."""
    if call.upstream_model in gitlab_fallback_models(config) or model in gitlab_fallback_models(config):
        mode = str((config.get("fallback") or {}).get("mode") or "code_suggestions")
        transport = _FALLBACKS.get(mode)
        if transport is None:
            raise UpstreamError(
                status=500,
                message=f"unknown GitLab fallback mode {mode!r} in provider_config",
                retryable=True,
                code="gitlab_bad_config",
                client_status=502,
            )
        return transport
    provider = gitlab_model_provider(model, config)
    if provider is None:
        raise UpstreamError(
            status=400,
            message=f"model '{model}' is not on this GitLab account's gateway allow-list",
            code="model_not_supported",
            retryable=True,
            cooldown=3600.0,
            cooldown_scope=CooldownScope.MODEL,
            client_status=400,
        )
    if provider == ANTHROPIC:
        return GATEWAY_MESSAGES
    wire = str((config.get("transport") or {}).get("openai_wire") or "auto")
    if wire == "chat":
        return GATEWAY_CHAT
    if wire == "responses":
        return GATEWAY_RESPONSES
    # auto: pass Chat through untouched; everything else goes to Responses (the hub dialect).
    return GATEWAY_CHAT if call.dialect is Dialect.CHAT else GATEWAY_RESPONSES


# --------------------------------------------------------- fallback → Chat Completions


class CodeSuggestionsToChat:
    """Maps the v4 code-suggestions SSE (stream_start / content_chunk / stream_end,
    docs/protocols/gitlab-duo.md#instance-fallbacks) to
    Chat Completions chunks as each event arrives (never collect-then-replay)."""

    def __init__(self, model: str, prompt_text: str) -> None:
        self.model = model
        self.id = f"chatcmpl-gitlab-{int(time.time() * 1000):x}"
        self.created = int(time.time())
        self.text = ""
        self.started = False
        self.finished = False
        self.prompt_tokens = count_text(prompt_text)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> SseEvent:
        data = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return SseEvent(None, orjson.dumps(data))

    def start(self) -> list[SseEvent]:
        if self.started:
            return []
        self.started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, ev: SseEvent) -> list[SseEvent]:
        out = self.start()
        kind = ev.event or "content_chunk"
        if kind == "content_chunk":
            piece = _chunk_text(ev.data)
            # Some versions resend the whole text so far; keep only what is new (prefix check).
            if piece.startswith(self.text) and self.text:
                piece = piece[len(self.text) :]
            if piece:
                self.text += piece
                out.append(self._chunk({"content": piece}))
        elif kind == "stream_end":
            out += self.finish()
        return out

    def finish(self) -> list[SseEvent]:
        if self.finished:
            return []
        self.finished = True
        out = self.start()
        out.append(self._chunk({}, "stop"))
        completion = count_text(self.text)
        # Usage is a local estimate on this path (docs/protocols/gitlab-duo.md#instance-fallbacks).
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        data = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }
        out.append(SseEvent(None, orjson.dumps(data)))
        out.append(SseEvent(None, b"[DONE]"))
        return out


def count_text(text: str) -> int:
    """A cheap local token estimate (~4 characters per token) for the lossy paths, which report
    no usage. Deliberately not a tokenizer: loading one would stall the event loop mid-stream."""
    return (len(text) + 3) // 4


def _chunk_text(data: bytes) -> str:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(obj, dict):
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            return str(delta.get("content") or choices[0].get("text") or "")
        return str(obj.get("content") or "")
    return ""


def completion_to_chat(body: Any, model: str, prompt_text: str) -> dict[str, Any]:
    """A non-stream code-suggestions or chat REST reply as a Chat Completions body."""
    if isinstance(body, str):
        text = body
    elif isinstance(body, dict) and isinstance(body.get("choices"), list) and body["choices"]:
        text = str(body["choices"][0].get("text") or "")
    else:
        text = ""
    prompt, completion = count_text(prompt_text), count_text(text)
    return {
        "id": f"chatcmpl-gitlab-{int(time.time() * 1000):x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


async def map_fallback_stream(
    events: AsyncIterator[SseEvent], mapper: CodeSuggestionsToChat
) -> AsyncIterator[SseEvent]:
    async for ev in events:
        for out in mapper.feed(ev):
            yield out
    # A stream that ended without stream_end is cut: leave `finished` False so no clean end
    # is synthesised (routing reports the cut to the client).
