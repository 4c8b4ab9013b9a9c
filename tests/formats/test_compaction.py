"""formats.compaction: the proxy's compaction blob, its expansion, the summarising request and
the answers built around a summary (docs/protocols/compaction.md)."""

from __future__ import annotations

import pytest

from formats import Dialect, UnsupportedFeature, encode_request
from formats.compaction import (
    PROXY_BLOB_PREFIX,
    SUMMARY_HEADER,
    SUMMARY_PROMPT,
    compaction_expand,
    endpoint_response,
    has_trigger,
    proxy_blob,
    proxy_summary,
    response_events,
    response_text,
    summarise_request,
    trigger_response,
)

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
CALL = {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{}"}
OUT = {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}
TOOL = {"type": "function", "name": "ls", "parameters": {"type": "object", "properties": {}}}


def test_blob_round_trip_and_foreign_blobs() -> None:
    blob = proxy_blob("Résumé: the user wants ls")
    assert blob.startswith(PROXY_BLOB_PREFIX)
    assert proxy_summary(blob) == "Résumé: the user wants ls"
    assert proxy_summary("gAAAAABcodex==") is None
    assert proxy_summary(PROXY_BLOB_PREFIX + "%%%") is None
    assert proxy_summary(None) is None


def test_expand_turns_own_items_into_a_user_message() -> None:
    body = {"model": "m", "input": [USER, {"type": "compaction", "encrypted_content": proxy_blob("S")}, USER]}
    out = compaction_expand(body, keep_foreign=False)
    assert out["input"][1] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": f"{SUMMARY_HEADER}\n\nS"}],
    }
    assert body["input"][1]["type"] == "compaction"  # the caller's body is not edited


def test_foreign_blob_kept_for_codex_refused_elsewhere() -> None:
    foreign = {"type": "compaction", "encrypted_content": "gAAAAABcodex=="}
    body = {"model": "m", "input": [USER, foreign]}
    assert compaction_expand(body, keep_foreign=True)["input"][1] == foreign
    with pytest.raises(UnsupportedFeature) as info:
        compaction_expand(body, keep_foreign=False)
    assert info.value.field == "input[1]"


def test_summarise_request_golden() -> None:
    body = {
        "model": "m",
        "input": [USER, CALL, OUT, {"type": "compaction_trigger"}],
        "tools": [TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "text": {"format": {"type": "json_object"}},
        "stream": True,
    }
    assert has_trigger(body)
    out = summarise_request(body)
    assert out == {
        "model": "m",
        "input": [
            USER,
            CALL,
            OUT,
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": SUMMARY_PROMPT}]},
        ],
        "tools": [TOOL],
        "tool_choice": "none",
        "stream": False,
    }
    # Every dialect can express it: the tools stay declared, none may be called.
    chat = encode_request(out, Dialect.CHAT)
    assert chat["tool_choice"] == "none" and chat["messages"][-1]["content"] == SUMMARY_PROMPT
    messages = encode_request({**out, "max_output_tokens": 100}, Dialect.MESSAGES)
    assert messages["tool_choice"] == {"type": "none"}
    assert "tools" not in summarise_request({"model": "m", "input": [USER, {"type": "compaction_trigger"}]})


def test_answers_around_a_summary() -> None:
    answer = {"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": " S "}]}]}
    assert response_text(answer) == "S"
    usage = {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
    final = trigger_response("S", model="m", usage=usage)
    assert [i["type"] for i in final["output"]] == ["compaction"] and final["status"] == "completed"
    assert proxy_summary(final["output"][0]["encrypted_content"]) == "S"
    names = [name for name, _ in response_events(final)]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    assert [obj["sequence_number"] for _, obj in response_events(final)] == [0, 1, 2, 3, 4]
    compacted = endpoint_response({"input": [USER, CALL, OUT, USER]}, "S", usage=usage)
    assert compacted["object"] == "response.compaction" and compacted["usage"] == usage
    assert [i["type"] for i in compacted["output"]] == ["message", "message", "compaction"]
