"""SSE framing, usage mapping (docs/protocols/translation.md#usage), error bodies
(docs/protocols/translation.md#errors-across-dialects) and token counting."""

from __future__ import annotations

import pytest

from formats import (
    Dialect,
    SseEvent,
    SseLimitExceeded,
    SseParser,
    Usage,
    encode_sse,
    error_body,
    error_from_upstream,
    usage_from,
    usage_to,
)
from formats.tokens import count_tokens


def test_sse_parser_handles_crlf_comments_multiline_and_partial_chunks() -> None:
    raw = b': keep-alive\r\n\r\nevent: a\r\ndata: {"x":1}\r\n\r\ndata: line1\ndata: line2\n\nevent: b\ndata:nospace\n\n'
    for size in (1, 2, 3, 7, len(raw)):
        p = SseParser()
        out: list[SseEvent] = []
        for i in range(0, len(raw), size):
            out += p.feed(raw[i : i + size])
        out += p.flush()
        assert out == [SseEvent("a", b'{"x":1}'), SseEvent(None, b"line1\nline2"), SseEvent("b", b"nospace")]


def test_sse_parser_flush_delivers_unterminated_event() -> None:
    p = SseParser()
    assert p.feed(b"data: [DONE]") == []
    assert p.flush() == [SseEvent(None, b"[DONE]")]


def test_sse_parser_is_bounded() -> None:
    p = SseParser(max_event_bytes=100)
    with pytest.raises(SseLimitExceeded):
        p.feed(b"data: " + b"x" * 200)
    p = SseParser(max_event_bytes=100)
    with pytest.raises(SseLimitExceeded):
        for _ in range(30):
            p.feed(b"data: 12345\n")


def test_encode_sse_round_trip() -> None:
    for ev in (SseEvent("x", b'{"a":1}'), SseEvent(None, b"[DONE]"), SseEvent(None, b"a\nb")):
        p = SseParser()
        assert p.feed(encode_sse(ev)) == [ev]
    assert encode_sse(SseEvent("e", b"1")) == b"event: e\ndata: 1\n\n"
    assert encode_sse(SseEvent(None, b"[DONE]")) == b"data: [DONE]\n\n"


def test_usage_mapping_table() -> None:
    chat = {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    u = usage_from(Dialect.CHAT, chat)
    assert u == Usage(input_tokens=100, output_tokens=20, cached_tokens=30, reasoning_tokens=5)
    assert usage_to(Dialect.MESSAGES, u) == {
        "input_tokens": 70,
        "output_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 30,
    }
    anth = usage_from(
        Dialect.MESSAGES,
        {"input_tokens": 8, "output_tokens": 12, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 5},
    )
    assert anth.input_tokens == 16 and anth.cached_tokens == 5 and anth.cache_creation_tokens == 3
    assert usage_to(Dialect.CHAT, anth)["prompt_tokens"] == 16
    assert usage_to(Dialect.RESPONSES, anth)["input_tokens_details"] == {"cached_tokens": 5, "cache_write_tokens": 3}
    assert usage_to(Dialect.MESSAGES, anth)["input_tokens"] == 8
    assert usage_from(Dialect.RESPONSES, None) == Usage()
    assert usage_to(Dialect.MESSAGES, Usage(input_tokens=1, cached_tokens=5))["input_tokens"] == 0


@pytest.mark.parametrize(
    ("status", "otype", "code", "atype"),
    [
        (400, "invalid_request_error", None, "invalid_request_error"),
        (401, "invalid_request_error", "invalid_api_key", "authentication_error"),
        (403, "invalid_request_error", "permission_denied", "permission_error"),
        (404, "invalid_request_error", "model_not_found", "not_found_error"),
        (413, "invalid_request_error", "request_too_large", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error"),
        (502, "server_error", None, "api_error"),
        (503, "server_error", None, "overloaded_error"),
        (504, "server_error", None, "timeout_error"),
        (529, "server_error", None, "overloaded_error"),
    ],
)
def test_error_body_per_status(status: int, otype: str, code: str | None, atype: str) -> None:
    for d in (Dialect.CHAT, Dialect.RESPONSES):
        assert error_body(d, status=status, message="m") == {
            "error": {"message": "m", "type": otype, "param": None, "code": code}
        }
    assert error_body(Dialect.MESSAGES, status=status, message="m") == {
        "type": "error",
        "error": {"type": atype, "message": "m"},
    }


def test_error_body_param_and_explicit_code() -> None:
    b = error_body(
        Dialect.CHAT, status=400, message="x", code="previous_response_not_found", param="previous_response_id"
    )
    assert b["error"]["param"] == "previous_response_id" and b["error"]["code"] == "previous_response_not_found"


def test_error_from_upstream_shapes() -> None:
    assert error_from_upstream(
        Dialect.CHAT, 429, b'{"error":{"message":"slow","type":"rate_limit_error","code":"rate_limit_exceeded"}}'
    ) == ("slow", "rate_limit_error", "rate_limit_exceeded")
    assert error_from_upstream(
        Dialect.MESSAGES, 529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    ) == ("Overloaded", "overloaded_error", None)
    assert error_from_upstream(Dialect.CHAT, 500, b'{"detail":"boom"}')[0] == "boom"
    assert error_from_upstream(Dialect.CHAT, 502, b"<html>bad gateway</html>")[0] == "<html>bad gateway</html>"
    assert error_from_upstream(Dialect.MESSAGES, 500, b"")[1] == "api_error"
    assert error_from_upstream(Dialect.CHAT, 500, b"\xff\xfe[") is not None


def test_count_tokens_is_deterministic_and_plausible() -> None:
    req = {
        "model": "m",
        "instructions": "Be terse.",
        "input": "hello world",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    }
    n = count_tokens(req)
    assert n == count_tokens(req)
    assert 15 < n < 80
    big = {"model": "m", "input": "word " * 1000}
    assert 900 < count_tokens(big) < 1100
