"""Non-stream response translation (docs/protocols/chat-completions.md#responses-and-streams,
docs/protocols/responses.md#response-object, docs/protocols/anthropic-messages.md#responses-and-stop-reasons,
docs/protocols/translation.md#streams, docs/protocols/translation.md#finish-and-stop-reasons)."""

from __future__ import annotations

from typing import Any

import pytest
from fmt_helpers import GOLDEN, json_golden

from formats import Dialect, UpstreamFormatError, decode_response, encode_response

CHAT_BODY = {
    "id": "chatcmpl-8eede802",
    "object": "chat.completion",
    "created": 1795300457,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_6278",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_7",
                        "type": "function",
                        "function": {"name": "apply_patch", "arguments": '{"input": "*** Begin Patch"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 12,
        "completion_tokens": 12,
        "total_tokens": 24,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}
MSG_BODY = {
    "id": "msg_88ce",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "EqSig"},
        {"type": "text", "text": "Hello."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 8, "output_tokens": 12, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3},
}
RESP_BODY = {
    "id": "resp_d3e3",
    "object": "response",
    "created_at": 1795300458,
    "status": "completed",
    "model": "m",
    "output": [
        {
            "id": "rs_1",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "encrypted_content": "gAAA",
        },
        {
            "id": "msg_ff67",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Hello.", "annotations": []},
                {"type": "refusal", "refusal": "no."},
            ],
        },
    ],
    "usage": {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 22,
    },
}
BODIES: dict[Dialect, dict[str, Any]] = {
    Dialect.CHAT: CHAT_BODY,
    Dialect.MESSAGES: MSG_BODY,
    Dialect.RESPONSES: RESP_BODY,
}


@pytest.mark.parametrize("source", list(Dialect))
@pytest.mark.parametrize("target", list(Dialect))
def test_non_stream_golden(source: Dialect, target: Dialect) -> None:
    canonical = decode_response(source, BODIES[source], custom_tools={"apply_patch"})
    canonical["created_at"] = 0
    out = encode_response(canonical, target, model="client-model")
    out.pop("created", None)
    json_golden(GOLDEN / "bodies" / f"{source.value}.to_{target.value}.json", out)


def test_custom_tool_call_comes_back_from_chat() -> None:
    c = decode_response(Dialect.CHAT, CHAT_BODY, custom_tools={"apply_patch"})
    assert c["output"][-1]["type"] == "custom_tool_call"
    assert c["output"][-1]["input"] == "*** Begin Patch"
    assert c["output"][-1]["call_id"] == "call_7"


def test_finish_and_stop_reasons() -> None:
    c = decode_response(Dialect.MESSAGES, {**MSG_BODY, "stop_reason": "max_tokens"})
    assert c["status"] == "incomplete"
    assert encode_response(c, Dialect.CHAT, model="m")["choices"][0]["finish_reason"] == "length"
    r = encode_response(RESP_BODY, Dialect.MESSAGES, model="m")
    assert r["stop_reason"] == "refusal"
    chat = encode_response(RESP_BODY, Dialect.CHAT, model="m")
    assert chat["choices"][0]["finish_reason"] == "stop" and chat["choices"][0]["message"]["refusal"] == "no."


def test_usage_mapping_in_bodies() -> None:
    c = decode_response(Dialect.MESSAGES, MSG_BODY)
    assert c["usage"]["input_tokens"] == 13 and c["usage"]["input_tokens_details"]["cached_tokens"] == 3
    chat = encode_response(c, Dialect.CHAT, model="m")
    assert chat["usage"]["prompt_tokens"] == 13 and chat["usage"]["total_tokens"] == 25
    back = encode_response(c, Dialect.MESSAGES, model="m")
    assert back["usage"] == {
        "input_tokens": 8,
        "output_tokens": 12,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 3,
    }


def test_anthropic_thinking_round_trips_signature() -> None:
    c = decode_response(Dialect.MESSAGES, MSG_BODY)
    out = encode_response(c, Dialect.MESSAGES, model="m")
    assert out["content"][0] == {"type": "thinking", "thinking": "hmm", "signature": "EqSig"}
    out = encode_response(RESP_BODY, Dialect.MESSAGES, model="m")
    assert out["content"][0]["signature"] == "gAAA@rs_1"


def test_garbage_upstream_raises_upstream_format_error() -> None:
    for d in Dialect:
        with pytest.raises(UpstreamFormatError):
            decode_response(d, {"nothing": True})
