"""The per-dialect rules for the start of a stream (formats/stream_start.py)."""

from __future__ import annotations

import pytest

from formats import Dialect, SseEvent, event_type, is_error_event, is_handshake


@pytest.mark.parametrize(
    ("dialect", "event", "data", "handshake", "error"),
    [
        (Dialect.MESSAGES, "message_start", b'{"type":"message_start"}', True, False),
        (Dialect.MESSAGES, "ping", b'{"type":"ping"}', True, False),
        (Dialect.MESSAGES, "content_block_delta", b'{"type":"content_block_delta"}', False, False),
        (Dialect.MESSAGES, "error", b'{"type":"error","error":{"type":"overloaded_error"}}', False, True),
        (Dialect.RESPONSES, "response.created", b'{"type":"response.created"}', True, False),
        (Dialect.RESPONSES, "response.in_progress", b'{"type":"response.in_progress"}', True, False),
        (Dialect.RESPONSES, None, b'{"type":"response.failed","response":{}}', False, True),
        (Dialect.RESPONSES, None, b'{"type":"error","message":"x"}', False, True),
        (Dialect.RESPONSES, None, b'{"type":"response.output_text.delta","delta":"hi"}', False, False),
        (Dialect.CHAT, None, b'{"id":"c","choices":[{"delta":{"content":"hi"}}]}', False, False),
        (Dialect.CHAT, None, b'{"error":{"message":"boom"}}', False, True),
    ],
)
def test_start_of_stream_rules(dialect: Dialect, event: str | None, data: bytes, handshake: bool, error: bool) -> None:
    ev = SseEvent(event, data)
    assert is_handshake(dialect, ev) is handshake
    assert is_error_event(dialect, ev) is error


def test_event_type_prefers_the_event_line_and_survives_garbage() -> None:
    assert event_type(SseEvent("message_start", b"{}")) == "message_start"
    assert event_type(SseEvent(None, b'{"type":"response.created"}')) == "response.created"
    assert event_type(SseEvent(None, b'{"type": broken')) == ""
    assert event_type(SseEvent(None, b"[DONE]")) == ""
