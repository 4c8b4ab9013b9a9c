"""Turn the Codex backend's SSE into a normal Responses stream (docs/protocols/codex.md#stream-quirks).

- `codex.rate_limits` / `codex.response.metadata` are consumed (quota readings), never forwarded;
- a `response.completed` whose `output` is empty gets it rebuilt from the
  `response.output_item.done` items, by `output_index`, with missing item ids filled in;
- a stream that ends before a terminal event is an error, never a clean-looking end.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import orjson

from executors.base import UpstreamStreamError
from formats import SseEvent

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ID_PREFIX = {
    "message": "msg_",
    "reasoning": "rs_",
    "function_call": "fc_",
    "custom_tool_call": "ctc_",
    "web_search_call": "ws_",
}


class CodexStreamBroken(UpstreamStreamError):
    """The upstream stream broke after it started (malformed event, cut before the end)."""

    def __init__(self, message: str, code: str = "upstream_stream_error") -> None:
        super().__init__(message)
        self.code = code


class CodexEventFilter:
    """Stateful per-response filter: feed upstream events, get client-visible events."""

    def __init__(self, on_rate_limits: Callable[[dict[str, Any]], None]) -> None:
        self._on_rate_limits = on_rate_limits
        self._done_items: dict[int, dict[str, Any]] = {}
        self.terminal: dict[str, Any] | None = None  # the terminal event, once seen
        self.first_error: dict[str, Any] | None = None  # an `error` event, once seen

    def feed(self, ev: SseEvent) -> tuple[dict[str, Any], SseEvent | None]:
        """Parse one event; return (parsed, event to forward or None)."""
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            raise CodexStreamBroken(
                "Codex backend sent a malformed stream event", "upstream_malformed_stream"
            ) from None
        if not isinstance(obj, dict):
            raise CodexStreamBroken(
                "Codex backend sent a stream event that is not an object", "upstream_malformed_stream"
            )
        etype = str(obj.get("type") or ev.event or "")
        if etype == "codex.rate_limits":
            self._on_rate_limits(obj)
            return obj, None
        if etype.startswith("codex."):
            return obj, None
        if etype == "response.output_item.done":
            idx = obj.get("output_index")
            item = obj.get("item")
            if isinstance(idx, int) and isinstance(item, dict):
                self._done_items[idx] = item
        elif etype == "error":
            self.first_error = obj
        elif etype in TERMINAL:
            self.terminal = obj
            response = obj.get("response")
            if isinstance(response, dict) and not response.get("output") and self._done_items:
                obj = {**obj, "response": {**response, "output": self.rebuilt_output()}}
                return obj, SseEvent(etype, orjson.dumps(obj))
        # Every forwarded event carries its `event:` name: Responses clients expect it.
        return obj, SseEvent(etype or None, ev.data) if ev.event != etype else ev

    def rebuilt_output(self) -> list[dict[str, Any]]:
        out = []
        for _, item in sorted(self._done_items.items()):
            if not item.get("id"):
                prefix = _ID_PREFIX.get(str(item.get("type")), "item_")
                item = {**item, "id": prefix + secrets.token_hex(12)}
            out.append(item)
        return out

    def final_response(self) -> dict[str, Any] | None:
        """The terminal `response` object (output already rebuilt when it came empty)."""
        if self.terminal is None:
            return None
        response = self.terminal.get("response")
        if not isinstance(response, dict):
            return None
        if not response.get("output") and self._done_items:
            response = {**response, "output": self.rebuilt_output()}
        return response
