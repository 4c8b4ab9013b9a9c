"""How the start of a stream reads in each dialect: the events that only open it (the
handshake) and the events that say it failed.

Every executor reads an upstream stream's start through one helper
(executors.streaming.open_stream) with this knowledge, so "an error before the first content
still fails over" follows one rule whatever the provider (docs/protocols/ describes the
events of each dialect).
"""

from __future__ import annotations

import orjson

from ._core import Dialect
from .sse import SseEvent

# Events that carry no content yet: an error right after them can still go to another account.
HANDSHAKE: dict[Dialect, frozenset[str]] = {
    Dialect.MESSAGES: frozenset({"message_start", "ping"}),
    Dialect.RESPONSES: frozenset({"response.created", "response.in_progress"}),
    Dialect.CHAT: frozenset(),
}
_ERROR_TYPES = frozenset({"error", "response.failed"})


def event_type(ev: SseEvent) -> str:
    """The event's type: its `event:` name, else the JSON payload's `type`."""
    if ev.event:
        return ev.event
    if ev.data.startswith(b'{"type":'):
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return ""
        if isinstance(obj, dict):
            return str(obj.get("type") or "")
    return ""


def is_error_event(dialect: Dialect, ev: SseEvent) -> bool:
    """An `error` / `response.failed` event, or a Chat chunk that is an error object."""
    if event_type(ev) in _ERROR_TYPES:
        return True
    return dialect is Dialect.CHAT and ev.data.lstrip().startswith(b'{"error"')


def is_handshake(dialect: Dialect, ev: SseEvent) -> bool:
    return event_type(ev) in HANDSHAKE[dialect]
