"""Fake Anthropic API: /v1/messages (+ count_tokens) and /v1/models, from the published API.

Written from Anthropic's public API reference and guides (docs.anthropic.com: "Messages",
"Count tokens", "Models", "Errors", "Rate limits", "Versions", "Streaming messages",
"Prompt caching", "Extended thinking"), never from this repository's code. What it checks, in
the API's order, and the answers it gives are the rows `anthropic.*` of docs/fake-rules.md:

- `x-api-key` present and known (401 `authentication_error`), `anthropic-version` present
  (400), a JSON body under 32 MB (413 `request_too_large`), only documented top-level fields,
  `max_tokens` and `messages` present, a known model (404 `not_found_error`), thinking blocks
  sent back with the signature this server issued (400);
- errors are `{"type":"error","error":{"type":...,"message":...}}` with the type's status
  (`error_for_status`), 429s carry `retry-after`, every answer carries `request-id` and the
  `anthropic-ratelimit-*` headers of a per-minute bucket;
- streams are `message_start`, `ping`, then per block `content_block_start` /
  `content_block_delta`... / `content_block_stop`, then `message_delta` (stop reason, usage)
  and `message_stop`, paced by `interval`; an error mid-stream is an `event: error`;
- prompt caching: blocks marked `cache_control` write the prefix (`cache_creation_input_tokens`)
  and the same prefix later reads it (`cache_read_input_tokens`).

Tokens are whitespace-separated words. Run standalone: `python -m tests.fakes.anthropic`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.fakes import base
from tests.fakes.base import FakeApp, FakeServer, HTTPError, Request, Response, SSEResponse

MODELS = ("claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929")
VERSIONS = frozenset({"2023-06-01", "2023-01-01"})
# Top-level fields of "Create a Message" (beta fields included: clients send them with their
# `anthropic-beta` header), and of "Count tokens in a Message".
MESSAGES_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
        "context_management", "output_config", "cache_control",
    }
)  # fmt: skip
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # "Request size limits": 32 MB for the Messages API
# "Errors": each error type with its HTTP status.
_STATUS_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed your organization's rate limit. Please try again later."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def anthropic_error(status: int, type_: str, message: str, *, rule: str | None = None, **headers: str) -> HTTPError:
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return HTTPError(status, body, {k.replace("_", "-"): v for k, v in headers.items()}, rule=rule)


def invalid(message: str, *, rule: str) -> HTTPError:
    return anthropic_error(400, "invalid_request_error", message, rule=rule)


def _error_event(error: dict[str, Any]) -> bytes:
    body = error if error.get("type") == "error" else {"type": "error", "error": error}
    return base.sse_event(body, event="error")


def _words(text: str) -> int:
    return len(text.split())


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    inner = block.get("content")
    parts = [
        block.get("text"),
        block.get("thinking"),
        orjson.dumps(block["input"]).decode() if "input" in block else None,
    ]
    if isinstance(inner, list | str):
        parts.append(_content_text(inner))
    return " ".join(str(p) for p in parts if p)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(_block_text(b) for b in content) if isinstance(content, list) else ""


@dataclass
class _Bucket:
    """A per-minute bucket per kind, as the rate-limit headers describe it."""

    limit: int
    used: int = 0
    started: float = 0.0

    def take(self, amount: int, now: float) -> None:
        if now - self.started >= 60.0:
            self.started, self.used = now, 0
        self.used += amount

    def headers(self, kind: str, now: float) -> dict[str, str]:
        start = self.started if now - self.started < 60.0 else now
        reset = datetime.fromtimestamp(start + 60.0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            f"anthropic-ratelimit-{kind}-limit": str(self.limit),
            f"anthropic-ratelimit-{kind}-remaining": str(max(0, self.limit - self.used)),
            f"anthropic-ratelimit-{kind}-reset": reset,
        }


class AnthropicApp(FakeApp):
    SETTINGS = ("chunks", "interval", "reply", "thinking_text")

    def __init__(
        self,
        *,
        keys: Iterable[str] = ("sk-ant-fake",),
        models: Iterable[str] = MODELS,
        chunks: int = 10,
        interval: float = 0.0,
        requests_per_minute: int = 4000,
        tokens_per_minute: int = 400_000,
    ) -> None:
        super().__init__()
        self.keys = set(keys)
        self.models = list(models)
        self.chunks, self.interval = chunks, interval
        self.reply: str | None = None
        self.thinking_text = "Let me think about that."
        self._defaults = {k: getattr(self, k) for k in self.SETTINGS}
        self._limits = (requests_per_minute, tokens_per_minute)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._reset_state()
        self.route("POST", "/v1/messages", self.messages)
        self.route("POST", "/v1/messages/count_tokens", self.count_tokens)
        self.route("GET", "/v1/models", self.list_models)

    def _reset_state(self) -> None:
        # Limits belong to the organisation behind a key: one set of buckets per key.
        self.buckets: dict[str, dict[str, _Bucket]] = {}
        self.cached_prefixes: set[str] = set()
        self.signatures: set[str] = set()

    def reset(self) -> None:
        super().reset()
        for k, v in self._defaults.items():
            setattr(self, k, v)
        with self._lock:
            self._reset_state()

    # -- framework hooks: the API's own error bodies
    def error_for_status(self, status: int) -> HTTPError:
        type_, message = _STATUS_ERRORS.get(status, ("api_error", f"HTTP {status}"))
        err = anthropic_error(status, type_, message)
        if status == 429:
            err.headers = {"retry-after": "1", **self._limit_headers("", time.time(), spent=True)}
        return err

    def not_found(self, req: Request) -> HTTPError:
        return anthropic_error(404, "not_found_error", f"Not found: {req.method} {req.path}")

    def default_stream_error(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

    def bucket(self, key: str) -> dict[str, _Bucket]:
        """The key's per-minute buckets (a test may spend them: `bucket(k)["requests"].used`)."""
        rpm, tpm = self._limits
        return self.buckets.setdefault(key, {"requests": _Bucket(rpm), "tokens": _Bucket(tpm)})

    def _limit_headers(self, key: str, now: float, *, spent: bool = False) -> dict[str, str]:
        out: dict[str, str] = {}
        with self._lock:
            for kind, bucket in self.bucket(key).items():
                out.update(bucket.headers(kind, now))
                if spent:
                    out[f"anthropic-ratelimit-{kind}-remaining"] = "0"
        return out

    # -- the checks every endpoint makes, in the API's order
    def _authenticate(self, req: Request) -> None:
        # `x-api-key` is the documented header; the official SDK (2.x) sends the same key as a
        # bearer token, which the API accepts too.
        key = req.headers.get("x-api-key") or req.bearer()
        if not key:
            raise anthropic_error(401, "authentication_error", "x-api-key header is required", rule="anthropic.api-key")
        if key not in self.keys:
            raise anthropic_error(401, "authentication_error", "invalid x-api-key", rule="anthropic.auth")
        if "anthropic-version" not in req.headers:
            raise invalid("anthropic-version: header is required", rule="anthropic.version-header")

    def _body(self, req: Request, fields: frozenset[str]) -> dict[str, Any]:
        if len(req.body) > MAX_REQUEST_BYTES:  # Cloudflare answers this, before the API looks at anything
            raise anthropic_error(
                413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", rule="anthropic.size"
            )
        self._authenticate(req)
        if req.json_error or not isinstance(req.json, dict):
            raise invalid("There was an error parsing the body of your request", rule="anthropic.schema")
        body: dict[str, Any] = req.json
        for key in body:
            if key not in fields:
                raise invalid(f"{key}: Extra inputs are not permitted", rule="anthropic.unknown-field")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise invalid("messages: Field required", rule="anthropic.schema")
        if body.get("model") not in self.models:
            raise anthropic_error(404, "not_found_error", f"model: {body.get('model')}", rule="anthropic.model")
        return body

    def _check_signatures(self, msgs: list[Any]) -> None:
        for i, msg in enumerate(msgs):
            content = msg.get("content") if isinstance(msg, dict) and msg.get("role") == "assistant" else None
            for j, block in enumerate(content if isinstance(content, list) else []):
                thinking = isinstance(block, dict) and block.get("type") == "thinking"
                if thinking and block.get("signature") not in self.signatures:
                    message = f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                    raise invalid(message, rule="anthropic.thinking-signature")

    # -- endpoints
    async def list_models(self, req: Request) -> Response:
        self._authenticate(req)
        query = dict(p.split("=", 1) for p in req.query.split("&") if "=" in p)
        limit = max(1, min(1000, int(query.get("limit", "20"))))
        after = query.get("after_id")
        start = self.models.index(after) + 1 if after in self.models else 0
        page = self.models[start : start + limit]
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m.replace("-", " ").title(),
                "created_at": "2025-05-14T00:00:00Z",
            }
            for m in page
        ]
        return base.json_response(
            {
                "data": data,
                "has_more": start + limit < len(self.models),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )

    async def count_tokens(self, req: Request) -> Response:
        body = self._body(req, COUNT_FIELDS)
        return base.json_response({"input_tokens": self._prompt_tokens(body)})

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        texts = [_content_text(m.get("content")) for m in body["messages"] if isinstance(m, dict)]
        texts.append(_content_text(body.get("system")))
        texts.extend(orjson.dumps(t).decode() for t in body.get("tools") or [])
        return sum(_words(t) for t in texts)

    async def messages(self, req: Request) -> Response | SSEResponse:
        body = self._body(req, MESSAGES_FIELDS)
        if not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool):
            raise invalid("max_tokens: Field required", rule="anthropic.schema")
        self._check_signatures(body["messages"])
        msg_id = f"msg_fake{next(self._ids):08d}"
        blocks, stop = self._answer(body, msg_id)
        usage = self._usage(body, blocks)
        now = time.time()
        key = req.headers.get("x-api-key") or req.bearer() or ""
        with self._lock:
            buckets = self.bucket(key)
            buckets["requests"].take(1, now)
            buckets["tokens"].take(usage["input_tokens"] + usage["output_tokens"], now)
        headers = {"request-id": f"req_fake{msg_id[8:]}", **self._limit_headers(key, now)}
        model = body["model"]
        if not body.get("stream"):
            message = {
                "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": blocks,
                "stop_reason": stop, "stop_sequence": None, "usage": usage,
            }  # fmt: skip
            return base.json_response(message, headers=headers)
        events = _stream(msg_id, model, blocks, stop, usage, req.chunks(self.chunks))
        return SSEResponse(events, interval=self.interval, headers=headers, error_event=_error_event, model=model)

    def _answer(self, body: dict[str, Any], msg_id: str) -> tuple[list[dict[str, Any]], str]:
        blocks: list[dict[str, Any]] = []
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
            signature = "sig_" + hashlib.sha256(msg_id.encode()).hexdigest()[:32]
            with self._lock:
                self.signatures.add(signature)
            blocks.append({"type": "thinking", "thinking": self.thinking_text, "signature": signature})
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
        reply, stop = self._reply_blocks(body["messages"], _last_user_text(body["messages"]), tools)
        return blocks + reply, stop

    def _reply_blocks(
        self, msgs: list[Any], last: str, tools: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        """The answer's blocks after any thinking block, and its stop reason (a scripted fake
        overrides it to drive real clients' own tools)."""
        result = _tool_result(msgs)
        if result:
            return [{"type": "text", "text": f"The tool returned: {result}"}], "end_turn"
        if tools and "call tool" in last:
            tool = tools[0]
            args = {name: "Paris" for name in (tool.get("input_schema") or {}).get("properties") or {}}
            call = {"type": "tool_use", "id": f"toolu_fake{next(self._ids):08d}", "name": tool["name"], "input": args}
            return [call], "tool_use"
        return [{"type": "text", "text": self.reply if self.reply is not None else f"echo: {last}"}], "end_turn"

    def _usage(self, body: dict[str, Any], blocks: list[dict[str, Any]]) -> dict[str, Any]:
        total = self._prompt_tokens(body)
        cached, prefix = self._cache_prefix(body)
        with self._lock:
            hit = prefix is not None and prefix in self.cached_prefixes
            if prefix is not None:
                self.cached_prefixes.add(prefix)
        cached = min(cached, total)
        return {
            "input_tokens": total - cached,
            "cache_creation_input_tokens": 0 if hit else cached,
            "cache_read_input_tokens": cached if hit else 0,
            "output_tokens": sum(_words(_block_text(b)) for b in blocks),
            "service_tier": "standard",
        }

    def _cache_prefix(self, body: dict[str, Any]) -> tuple[int, str | None]:
        """Tokens and hash of the prompt up to the last `cache_control` breakpoint (system and
        message blocks, in prompt order)."""
        system = body.get("system")
        blocks = [b for b in system if isinstance(b, dict)] if isinstance(system, list) else []
        for msg in body["messages"]:
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, list):
                blocks.extend(b for b in content if isinstance(b, dict))
        marks = [i for i, b in enumerate(blocks) if b.get("cache_control")]
        if not marks:
            return 0, None
        prefix = blocks[: marks[-1] + 1]
        digest = hashlib.sha256(orjson.dumps([body["model"], prefix], option=orjson.OPT_SORT_KEYS)).hexdigest()
        return sum(_words(_block_text(b)) for b in prefix), digest


def _last_user_text(msgs: list[Any]) -> str:
    for msg in reversed(msgs):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            texts = [content] if isinstance(content, str) else [
                str(b.get("text", "")) for b in content or [] if isinstance(b, dict) and b.get("type") == "text"
            ]  # fmt: skip
            if any(texts):
                return " ".join(texts)
    return ""


def _tool_result(msgs: list[Any]) -> str:
    last = msgs[-1] if msgs else None
    content = last.get("content") if isinstance(last, dict) else None
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            return _content_text(block.get("content")) or "(empty)"
    return ""


def _stream(
    msg_id: str, model: str, blocks: list[dict[str, Any]], stop: str, usage: dict[str, Any], n: int
) -> Iterator[bytes]:
    """The event sequence of "Streaming messages"."""

    def ev(type_: str, **data: Any) -> bytes:
        return base.sse_event({"type": type_, **data}, event=type_)

    head: dict[str, Any] = {
        "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1},
    }  # fmt: skip
    yield ev("message_start", message=head)
    yield ev("ping")
    for i, block in enumerate(blocks):
        kind = block["type"]
        if kind == "thinking":
            yield ev("content_block_start", index=i, content_block={"type": "thinking", "thinking": ""})
            for piece in base.iter_split(block["thinking"], n):
                yield ev("content_block_delta", index=i, delta={"type": "thinking_delta", "thinking": piece})
            yield ev("content_block_delta", index=i, delta={"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield ev("content_block_start", index=i, content_block=start)
            for piece in base.iter_split(orjson.dumps(block["input"]).decode(), n):
                yield ev("content_block_delta", index=i, delta={"type": "input_json_delta", "partial_json": piece})
        else:
            yield ev("content_block_start", index=i, content_block={"type": "text", "text": ""})
            for piece in base.iter_split(block["text"], n):
                yield ev("content_block_delta", index=i, delta={"type": "text_delta", "text": piece})
        yield ev("content_block_stop", index=i)
    final = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    yield ev(
        "message_delta",
        delta={"stop_reason": stop, "stop_sequence": None},
        usage={**final, "output_tokens": usage["output_tokens"]},
    )
    yield ev("message_stop")


def serve(*, keys: Iterable[str] = ("sk-ant-fake",), port: int = 0, **kw: Any) -> FakeServer[AnthropicApp]:
    return FakeServer(AnthropicApp(keys=keys, **kw), port=port).start()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Anthropic API")
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--key", action="append", default=None)
    parser.add_argument("--interval", type=float, default=0.0)
    args = parser.parse_args()
    server = serve(keys=args.key or ["sk-ant-fake"], port=args.port, interval=args.interval)
    print(f"fake Anthropic API on {server.url} (keys: {', '.join(server.app.keys)})", flush=True)
    base.wait_for_signal()
    server.stop()


if __name__ == "__main__":
    main()
