"""Request translation: golden files per direction, plus targeted mapping rules."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fmt_helpers import GOLDEN, json_golden

from formats import (
    Dialect,
    EncodeOptions,
    InvalidRequest,
    UnsupportedFeature,
    custom_tool_names,
    decode_request,
    encode_request,
    hosted_tools_drop,
    validate_request,
)

REQ = GOLDEN / "requests"
INPUTS = sorted(p for p in REQ.glob("*.json") if p.name.count(".") == 2)


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except UnsupportedFeature as e:
        return {"unsupported": e.field, "reason": e.reason}


@pytest.mark.parametrize("path", INPUTS, ids=[p.stem for p in INPUTS])
def test_golden_request_translation(path: Any) -> None:
    name, dialect = path.stem.split(".")
    body = orjson.loads(path.read_bytes())
    canonical = decode_request(Dialect(dialect), body)
    json_golden(REQ / "out" / f"{name}.canonical.json", canonical)
    for target in Dialect:
        json_golden(
            REQ / "out" / f"{name}.to_{target.value}.json", _outcome(lambda t=target: encode_request(canonical, t))
        )


def _load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads((REQ / name).read_bytes())
    return result


def test_claude_code_system_handling() -> None:
    c = decode_request(Dialect.MESSAGES, _load("claude_code.messages.json"))
    # billing header dropped, blocks joined with blank lines, cache_control gone
    assert c["instructions"] == "You are a Claude agent, built on Anthropic's Claude Agent SDK.\n\nMain prompt."
    # the role:"system" message inside messages stays in place as a developer item
    assert c["input"][1] == {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": "<agents/skills text>"}],
    }
    assert c["reasoning"] == {"summary": "auto", "effort": "high"}
    assert c["parallel_tool_calls"] is False
    assert "metadata" not in c and "context_management" not in c


def test_anthropic_thinking_signature_unpacks_to_reasoning_item() -> None:
    c = decode_request(Dialect.MESSAGES, _load("claude_code.messages.json"))
    rs = [i for i in c["input"] if i["type"] == "reasoning"]
    assert rs == [
        {
            "type": "reasoning",
            "id": "rs_123",
            "summary": [{"type": "summary_text", "text": "Use the tool."}],
            "encrypted_content": "gAAAAB-enc",
        }
    ]


def test_foreign_anthropic_signature_kept_for_anthropic_dropped_for_openai() -> None:
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "EqQBsig"},
                    {"type": "redacted_thinking", "data": "REDACTED"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
        ],
    }
    c = decode_request(Dialect.MESSAGES, body)
    back = encode_request(c, Dialect.MESSAGES)
    assert back["messages"][1]["content"][:2] == [
        {"type": "thinking", "thinking": "hmm", "signature": "EqQBsig"},
        {"type": "redacted_thinking", "data": "REDACTED"},
    ]
    to_openai = encode_request(c, Dialect.RESPONSES)
    assert not [i for i in to_openai["input"] if i.get("type") == "reasoning"]


def test_tool_result_is_error_round_trips_through_canonical() -> None:
    c = decode_request(Dialect.MESSAGES, _load("claude_code.messages.json"))
    back = encode_request(c, Dialect.MESSAGES)
    results = [
        b
        for m in back["messages"]
        for b in m["content"]
        if isinstance(m["content"], list) and b.get("type") == "tool_result"
    ]
    assert results[0] == {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}
    # all-text block content is carried as one string; the error flag survives
    assert results[1] == {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": True, "content": "no such file"}


def test_tool_results_lead_their_user_turn() -> None:
    c = decode_request(Dialect.MESSAGES, _load("claude_code.messages.json"))
    back = encode_request(c, Dialect.MESSAGES)
    last = back["messages"][-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "image", "image", "text"]
    assert last[2]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def test_custom_tool_round_trip_via_chat() -> None:
    c = decode_request(Dialect.RESPONSES, _load("codex.responses.json"))
    assert custom_tool_names(c) == {"apply_patch"}
    chat = encode_request(c, Dialect.CHAT)
    fn = next(t for t in chat["tools"] if t["function"]["name"] == "apply_patch")["function"]
    assert fn["parameters"]["required"] == ["input"]
    assert "start: patch" in fn["parameters"]["properties"]["input"]["description"]
    call = next(tc for m in chat["messages"] for tc in m.get("tool_calls", []) if tc["id"] == "call_p1")
    assert orjson.loads(call["function"]["arguments"]) == {"input": "*** Begin Patch\n*** End Patch\n"}
    # and back: a chat client replaying the same transcript yields custom items again
    chat_client = {k: v for k, v in chat.items() if k != "stream_options"}
    chat_client["tools"] = [
        {"type": "custom", "custom": {"name": "apply_patch"}} if t["function"]["name"] == "apply_patch" else t
        for t in chat["tools"]
    ]
    for m in chat_client["messages"]:
        for tc in m.get("tool_calls", []):
            if tc["function"]["name"] == "apply_patch":
                tc["type"] = "custom"
                tc["custom"] = {"name": "apply_patch", "input": orjson.loads(tc.pop("function")["arguments"])["input"]}
    again = decode_request(Dialect.CHAT, chat_client)
    items = [i for i in again["input"] if i["type"].startswith("custom")]
    assert items == [
        {
            "type": "custom_tool_call",
            "call_id": "call_p1",
            "name": "apply_patch",
            "input": "*** Begin Patch\n*** End Patch\n",
        },
        {"type": "custom_tool_call_output", "call_id": "call_p1", "output": "Done!"},
    ]


def test_call_ids_preserved_verbatim_everywhere() -> None:
    c = decode_request(Dialect.CHAT, _load("sdk_tools.chat.json"))
    for target in (Dialect.MESSAGES, Dialect.RESPONSES):
        text = orjson.dumps(_outcome(lambda t=target: encode_request({**c, "text": None, "stop": None}, t))).decode()
        assert "call_1" in text and "call_2" in text


@pytest.mark.parametrize(
    ("dialect", "body"),
    [
        (Dialect.CHAT, {"messages": [{"role": "user", "content": "hi"}]}),
        (Dialect.RESPONSES, {"input": "hi"}),
        (Dialect.MESSAGES, {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
@pytest.mark.parametrize("field", ["brand_new_field", "base_url", "extra_body"])
def test_unknown_top_level_fields_are_refused_per_dialect(dialect: Dialect, body: dict[str, Any], field: str) -> None:
    """What the real APIs refuse (unknown fields) never reaches an upstream (issue 17 F4)."""
    with pytest.raises(InvalidRequest) as ei:
        validate_request(dialect, {"model": "m", **body, field: 1})
    assert ei.value.field == field and "unknown parameter" in ei.value.message


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
    ],
)
def test_account_bound_state_fields_are_refused(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(UnsupportedFeature) as ei:
        validate_request(Dialect.RESPONSES, {"model": "m", "input": "hi", **patch})
    assert ei.value.field == field
    validate_request(Dialect.RESPONSES, {"model": "m", "input": "hi", "background": False, "conversation": None})


@pytest.mark.parametrize(
    ("dialect", "patch", "field"),
    [
        (Dialect.CHAT, {"n": 2}, "n"),
        (Dialect.CHAT, {"logprobs": True}, "logprobs"),
        (Dialect.CHAT, {"modalities": ["text", "audio"]}, "modalities"),
        (Dialect.CHAT, {"web_search_options": {"search_context_size": "low"}}, "web_search_options"),
        (Dialect.MESSAGES, {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        (Dialect.MESSAGES, {"mcp_servers": [{"url": "x"}]}, "mcp_servers"),
    ],
)
def test_decode_rejects_with_field(dialect: Dialect, patch: dict[str, Any], field: str | None) -> None:
    base: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if dialect is Dialect.MESSAGES:
        base["max_tokens"] = 10
    with pytest.raises(UnsupportedFeature) as ei:
        decode_request(dialect, {**base, **patch})
    if field:
        assert ei.value.field == field


@pytest.mark.parametrize(
    ("target", "patch", "field"),
    [
        (Dialect.CHAT, {"tools": [{"type": "web_search"}]}, "tools[0].type"),
        (Dialect.CHAT, {"tools": [{"type": "tool_search"}]}, "tools[0].type"),
        (Dialect.CHAT, {"tools": [{"type": "tool_search", "execution": "client"}]}, "tools[0].type"),
        (Dialect.MESSAGES, {"tools": [{"type": "file_search"}]}, "tools[0].type"),
        (Dialect.MESSAGES, {"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
        (Dialect.MESSAGES, {"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format"),
        (Dialect.RESPONSES, {"stop": ["x"]}, "stop"),
        (Dialect.CHAT, {"previous_response_id": "resp_1"}, "previous_response_id"),
        (Dialect.CHAT, {"top_logprobs": 3}, "top_logprobs"),
        (
            Dialect.MESSAGES,
            {"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
            "input[0].call_id",
        ),
        (
            Dialect.MESSAGES,
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{bad"}]},
            "input[0].arguments",
        ),
        (
            Dialect.CHAT,
            {
                "input": [
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "image_url": "https://x/y.png"}],
                    },
                ]
            },
            "input[1].output[0]",
        ),
        (Dialect.CHAT, {"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
        (Dialect.CHAT, {"unknown_knob": True}, "unknown_knob"),
    ],
)
def test_encode_rejects_with_field(target: Dialect, patch: dict[str, Any], field: str) -> None:
    c = {"model": "m", "input": "hi", **patch}
    with pytest.raises(UnsupportedFeature) as ei:
        encode_request(c, target)
    assert ei.value.field == field


FN = {"type": "function", "name": "f"}
WEB = {"type": "web_search"}


@pytest.mark.parametrize(
    ("patch", "kept", "dropped", "rest"),
    [
        # Offered next to a function (Codex CLI's shape): dropped, the rest untouched.
        ({"tools": [WEB, FN], "tool_choice": "auto", "parallel_tool_calls": True}, [FN], ("web_search",),
         {"tool_choice": "auto", "parallel_tool_calls": True}),
        # A call is required, but a function remains to satisfy it.
        ({"tools": [WEB, FN], "tool_choice": "required"}, [FN], ("web_search",), {"tool_choice": "required"}),
        # Only hosted tools offered, no call required: the request goes out without tools.
        ({"tools": [WEB, {"type": "file_search"}], "tool_choice": "auto", "parallel_tool_calls": False}, None,
         ("web_search", "file_search"), {}),
        # allowed_tools loses the hosted entries; with none left and mode auto nothing may be called.
        ({"tools": [WEB, FN], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [WEB]}}, [FN],
         ("web_search",), {"tool_choice": "none"}),
        # Nothing hosted: the very same object comes back.
        ({"tools": [FN]}, [FN], (), {}),
    ],
)  # fmt: skip
def test_offered_hosted_tools_are_dropped(
    patch: dict[str, Any], kept: list[Any] | None, dropped: tuple[str, ...], rest: dict[str, Any]
) -> None:
    c = {"model": "m", "input": "hi", **patch}
    out, names = hosted_tools_drop(c)
    assert names == dropped and out.get("tools") == kept
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == rest
    if not dropped:
        assert out is c
    body = encode_request(out, Dialect.CHAT)  # what the Chat target then receives
    assert [t["function"]["name"] for t in body.get("tools", [])] == [t["name"] for t in kept or []]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"tools": [WEB, FN], "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"tools": [FN, WEB], "tool_choice": "required"}, None),  # a function can satisfy it: not forced
        ({"tools": [WEB], "tool_choice": "required"}, "tools[0].type"),
        ({"tools": [WEB], "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [WEB]}}, "tool_choice"),
    ],
)
def test_forced_hosted_tools_are_refused_naming_the_field(patch: dict[str, Any], field: str | None) -> None:
    c = {"model": "m", "input": "hi", **patch}
    if field is None:
        assert hosted_tools_drop(c)[1] == ("web_search",)
        return
    with pytest.raises(UnsupportedFeature) as ei:
        hosted_tools_drop(c)
    assert ei.value.field == field and ("web_search" in ei.value.reason or "hosted" in ei.value.reason)


def test_translators_alone_still_refuse_hosted_tools() -> None:
    """The pure encoders never drop anything silently: dropping is the caller's explicit step."""
    for target in (Dialect.CHAT, Dialect.MESSAGES):
        with pytest.raises(UnsupportedFeature) as ei:
            encode_request({"model": "m", "input": "hi", "tools": [WEB, FN]}, target)
        assert ei.value.field == "tools[0].type"


def test_tool_choice_forms() -> None:
    tools = [{"type": "function", "name": "f"}]
    cases = [
        ("auto", "auto", {"type": "auto"}),
        ("required", "required", {"type": "any"}),
        ("none", "none", {"type": "none"}),
        (
            {"type": "function", "name": "f"},
            {"type": "function", "function": {"name": "f"}},
            {"type": "tool", "name": "f"},
        ),
    ]
    for canon, chat, anth in cases:
        c = {"model": "m", "input": "hi", "tools": tools, "tool_choice": canon}
        assert encode_request(c, Dialect.CHAT)["tool_choice"] == chat
        assert encode_request(c, Dialect.MESSAGES)["tool_choice"] == anth
    c = {"model": "m", "input": "hi", "tools": tools, "parallel_tool_calls": False}
    assert encode_request(c, Dialect.MESSAGES)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    chat = decode_request(
        Dialect.CHAT,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]},
            },
        },
    )
    assert chat["tool_choice"] == {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "f"}],
    }
    assert encode_request(chat, Dialect.CHAT)["tool_choice"]["allowed_tools"]["mode"] == "required"


def test_max_tokens_and_thinking_budget_mapping() -> None:
    c = {"model": "m", "input": "hi", "reasoning": {"effort": "high"}, "max_output_tokens": 4000}
    out = encode_request(c, Dialect.MESSAGES)
    assert out["max_tokens"] == 4000 and out["thinking"] == {"type": "enabled", "budget_tokens": 3999}
    out = encode_request({"model": "m", "input": "hi"}, Dialect.MESSAGES, options=EncodeOptions(default_max_tokens=77))
    assert out["max_tokens"] == 77 and "thinking" not in out
    out = encode_request(
        {"model": "m", "input": "hi", "max_output_tokens": 5},
        Dialect.CHAT,
        options=EncodeOptions(chat_max_tokens_field="max_tokens"),
    )
    assert out["max_tokens"] == 5


def test_validate_errors_name_the_field() -> None:
    with pytest.raises(InvalidRequest) as ei:
        decode_request(Dialect.CHAT, {"model": "m", "messages": [{"role": "robot", "content": "x"}]})
    assert ei.value.field == "messages[0].role"


def test_namespace_tools_are_flattened_and_calls_map_back() -> None:
    from formats import custom_tool_names, decode_request, decode_response, encode_request

    member = {"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "go"},
            # history: an earlier call to a namespaced tool, as Codex CLI sends it back
            {"type": "function_call", "call_id": "c1", "name": "spawn", "namespace": "agents", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ],
        "tools": [{"type": "namespace", "name": "agents", "description": "d", "tools": [member]}],
    }
    canonical = decode_request(Dialect.RESPONSES, body)
    chat = encode_request(canonical, Dialect.CHAT)
    assert [t["function"]["name"] for t in chat["tools"]] == ["agents__spawn"]
    assert chat["messages"][1]["tool_calls"][0]["function"]["name"] == "agents__spawn"
    messages = encode_request(canonical, Dialect.MESSAGES)
    assert [t["name"] for t in messages["tools"]] == ["agents__spawn"]
    # the upstream calls the flat name; the client gets its own namespaced call back
    reply = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c2", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}}
                    ],
                },
            }
        ],
    }
    out = decode_response(Dialect.CHAT, reply, custom_tools=custom_tool_names(canonical))
    call = next(i for i in out["output"] if i["type"] == "function_call")
    assert (call["name"], call["namespace"], call["call_id"]) == ("spawn", "agents", "c2")
