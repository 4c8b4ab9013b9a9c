"""Upstream events → client events, for one streamed answer.

Same dialect: bytes pass through; only events that can carry usage are parsed (a substring
test first). Different dialects: `formats.StreamTranslator` converts incrementally. Either
way the relay knows whether the upstream finished properly, so a cut stream never looks
complete to the client.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

from formats import Dialect, SseEvent, StreamTranslator, Usage, encode_sse, usage_from

_DONE = b"[DONE]"
# Text carried by a delta event in any dialect (Chat content/arguments, Responses delta,
# Anthropic text/partial_json/thinking): counted only when the upstream never reports usage.
_DELTA_TEXT = re.compile(rb'"(?:content|text|delta|arguments|partial_json|thinking|refusal)":"((?:[^"\\]|\\.)*)"')
_KEEP_BYTES = 4 * 1024 * 1024
_RESPONSES_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class ChatPassthrough:
    """Chat → Chat: hide the usage-only chunk the proxy asked for unless the client did."""

    def __init__(self, *, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.served_model: str | None = None
        self.done = False

    def feed(self, ev: SseEvent) -> bytes | None:
        data = ev.data
        if data == _DONE:
            self.done = True
            return b"data: [DONE]\n\n"
        if self.served_model is None:
            self.served_model = _model_of(data)
        if b'"usage":{' in data or b'"usage": {' in data:
            chunk = orjson.loads(data)
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                self.usage = usage_from(Dialect.CHAT, usage)
                if not self.include_usage and not chunk.get("choices"):
                    return None
        return b"data: " + data + b"\n\n"


def _model_of(data: bytes) -> str | None:
    try:
        value = orjson.loads(data).get("model")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _source_terminal(source: Dialect, ev: SseEvent) -> bool:
    if source is Dialect.CHAT:
        return ev.data == _DONE
    if source is Dialect.MESSAGES:
        return ev.event == "message_stop" or (ev.event is None and b'"type":"message_stop"' in ev.data[:40])
    if ev.event is not None:
        return ev.event in _RESPONSES_TERMINAL
    head = ev.data[:60]
    return any(t.encode() in head for t in _RESPONSES_TERMINAL)


class Relay:
    """One per streamed answer: feed upstream events, get client bytes."""

    def __init__(
        self,
        *,
        source: Dialect,
        target: Dialect,
        model: str,
        include_usage: bool,
        custom_tools: Collection[str] = (),
        input_tokens: int = 0,
        frames: bool = False,
    ) -> None:
        self.source, self.target = source, target
        # frames: one event's JSON per output item (a WebSocket message) instead of SSE bytes.
        self._encode = _frame if frames else encode_sse
        self.done = False
        # Delta events as delivered, kept (up to _KEEP_BYTES) to estimate the output if the
        # stream is cut before the upstream reports usage: one append per event otherwise.
        self._deltas: list[bytes] = []
        self._delta_bytes = 0
        self._delta_overflow = 0
        self.final_response: dict[str, Any] | None = None  # Responses clients: for the snapshot
        self._chat = ChatPassthrough(include_usage=include_usage) if source is target is Dialect.CHAT else None
        self._translator = StreamTranslator(
            source,
            target,
            model=model,
            include_usage=include_usage,
            custom_tools=custom_tools,
            input_tokens=input_tokens,
        )

    @property
    def usage(self) -> Usage | None:
        return self._chat.usage if self._chat is not None else self._translator.usage

    @property
    def served_model(self) -> str | None:
        return self._chat.served_model if self._chat is not None else None

    def feed(self, ev: SseEvent) -> list[bytes]:
        data = ev.data
        if b"delta" in data:
            if self._delta_bytes < _KEEP_BYTES:
                self._deltas.append(data)
                self._delta_bytes += len(data)
            else:
                self._delta_overflow += len(data)
        if self._chat is not None:
            out = self._chat.feed(ev)
            self.done = self._chat.done
            return [] if out is None else [out]
        if _source_terminal(self.source, ev):
            self.done = True
        return [self._emit(e) for e in self._translator.feed(ev)]

    def output_estimate(self) -> int:
        """Rough output tokens already relayed (text bytes / 4), for a stream that ended
        without usage from the upstream (e.g. cut mid-way)."""
        text = sum(len(m) for data in self._deltas for m in _DELTA_TEXT.findall(data))
        if self._delta_overflow and self._delta_bytes:
            text = text * (self._delta_bytes + self._delta_overflow) // self._delta_bytes
        return (text + 3) // 4

    def finish(self) -> list[bytes]:
        """The upstream closed cleanly: closing events the client still needs."""
        if self._chat is not None:
            return []
        return [self._emit(e) for e in self._translator.finish()]

    def error(self, *, message: str, code: str) -> list[bytes]:
        return [self._encode(e) for e in self._translator.error_events(message=message, type="server_error", code=code)]

    def _emit(self, ev: SseEvent) -> bytes:
        if self.target is Dialect.RESPONSES and self.final_response is None and _is_completed(ev):
            try:
                obj = orjson.loads(ev.data)
                response = obj.get("response")
                if isinstance(response, dict):
                    self.final_response = response
            except orjson.JSONDecodeError:
                pass
        return self._encode(ev)


def _frame(ev: SseEvent) -> bytes:
    return ev.data


def _is_completed(ev: SseEvent) -> bool:
    if ev.event is not None:
        return ev.event == "response.completed"
    return b'"response.completed"' in ev.data[:60]
