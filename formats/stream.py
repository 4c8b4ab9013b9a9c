"""StreamTranslator: one per response, source dialect events -> target dialect events.

Pipeline: source decoder -> canonical Responses events -> target encoder. For
source == target it is a cheap identity that only peeks at usage-bearing events.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from ._core import Dialect, JSONDict, as_dict, loads_event
from .sse import SseEvent
from .stream_decode import TERMINAL_TYPES, ChatDecoder, MessagesDecoder, ResponsesDecoder
from .stream_encode import ChatEncoder, MessagesEncoder, ResponsesEncoder
from .usage import Usage, usage_from


class _Decoder(Protocol):
    @property
    def usage(self) -> Usage | None: ...
    def feed(self, ev: SseEvent) -> list[JSONDict]: ...
    def finish(self) -> list[JSONDict]: ...


class _Encoder(Protocol):
    def feed(self, e: JSONDict) -> list[SseEvent]: ...
    def finish(self) -> list[SseEvent]: ...
    def error_events(self, *, message: str, type: str, code: str | None) -> list[SseEvent]: ...


class StreamTranslator:
    """Incremental translator for one streamed response.

    ``model`` is the name shown to the client. ``custom_tools`` (from
    ``custom_tool_names(canonical_request)``) turns calls of freeform tools back into
    ``custom_tool_call`` items. ``input_tokens`` is the best prompt estimate, used for
    Anthropic's ``message_start`` before the upstream reports usage.
    """

    def __init__(
        self,
        source: Dialect,
        target: Dialect,
        *,
        model: str,
        include_usage: bool = True,
        custom_tools: Collection[str] = (),
        input_tokens: int = 0,
    ) -> None:
        self.source = source
        self.target = target
        self.identity = source is target
        self._usage: Usage | None = None
        self._resp_id: str | None = None
        decoder: _Decoder
        if source is Dialect.CHAT:
            decoder = ChatDecoder(custom_tools)
        elif source is Dialect.MESSAGES:
            decoder = MessagesDecoder(custom_tools)
        else:
            decoder = ResponsesDecoder()
        encoder: _Encoder
        if target is Dialect.CHAT:
            encoder = ChatEncoder(model, include_usage)
        elif target is Dialect.MESSAGES:
            encoder = MessagesEncoder(model, input_tokens)
        else:
            encoder = ResponsesEncoder(model)
        self._decoder = decoder
        self._encoder = encoder

    @property
    def usage(self) -> Usage | None:
        """Filled once the source reported usage (None: estimate it, e.g. with tokens.py)."""
        return self._usage if self.identity else self._decoder.usage

    def feed(self, ev: SseEvent) -> list[SseEvent]:
        if self.identity:
            self._peek(ev)
            return [ev]
        out: list[SseEvent] = []
        for c in self._decoder.feed(ev):
            out += self._encoder.feed(c)
        return out

    def finish(self) -> list[SseEvent]:
        """The source ended cleanly: emit whatever terminal events the target still needs."""
        if self.identity:
            return []
        out: list[SseEvent] = []
        for c in self._decoder.finish():
            out += self._encoder.feed(c)
        return out + self._encoder.finish()

    def error_events(self, *, message: str, type: str, code: str | None) -> list[SseEvent]:
        """A mid-stream failure, expressed as the target dialect's stream error."""
        if self.identity and self.target is Dialect.RESPONSES and isinstance(self._encoder, ResponsesEncoder):
            self._encoder.resp_id = self._resp_id
        return self._encoder.error_events(message=message, type=type, code=code)

    def _peek(self, ev: SseEvent) -> None:
        # Same-dialect streams are passed through; only usage-bearing events are parsed.
        data = ev.data
        try:
            if self.source is Dialect.CHAT:
                if b'"usage"' in data and b'"usage":null' not in data and data != b"[DONE]":
                    u = loads_event(data).get("usage")
                    if isinstance(u, dict):
                        self._usage = usage_from(Dialect.CHAT, u)
            elif self.source is Dialect.MESSAGES:
                if ev.event in ("message_start", "message_delta") or (
                    ev.event is None and (b"message_start" in data or b"message_delta" in data)
                ):
                    obj = loads_event(data)
                    is_delta = obj.get("type") == "message_delta"
                    u = obj.get("usage") if is_delta else as_dict(obj.get("message")).get("usage")
                    if isinstance(u, dict):
                        raw = getattr(self, "_raw_anthropic", {})
                        raw.update({k: v for k, v in u.items() if v is not None})
                        self._raw_anthropic = raw
                        self._usage = usage_from(Dialect.MESSAGES, raw)
            elif (
                ev.event in TERMINAL_TYPES
                or ev.event == "response.created"
                or (ev.event is None and b'"response.' in data[:64])
            ):
                obj = loads_event(data)
                resp = as_dict(obj.get("response"))
                if obj.get("type") == "response.created":
                    self._resp_id = str(resp.get("id") or "") or None
                elif obj.get("type") in TERMINAL_TYPES and isinstance(resp.get("usage"), dict):
                    self._usage = usage_from(Dialect.RESPONSES, resp["usage"])
        except Exception:
            return
