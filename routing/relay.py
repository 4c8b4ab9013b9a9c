"""Same-dialect passthrough of Chat Completions streams.

Bytes pass through untouched; only events that mention usage are parsed (a substring test
first), and the usage-only chunk the proxy asked for is hidden from clients that did not.
"""

from __future__ import annotations

import orjson

from formats import Dialect, SseEvent, Usage, usage_from

_DONE = b"[DONE]"


class ChatPassthrough:
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
