"""The official SDKs' stream accumulators judge what we emit (docs/protocols/responses.md#ordering-rules, clients.md).

Every upstream fixture is translated to every client dialect and served through an httpx
MockTransport to ``openai`` / ``anthropic`` exactly as a proxy would serve it.
"""

from __future__ import annotations

import anthropic
import httpx
import httpx2
import openai
import pytest
from fmt_helpers import FIXTURES, sse_transport, to_bytes, translate, upstream_events

from formats import Dialect, SseEvent, StreamTranslator

CASES = [(src, name) for src, names in FIXTURES.items() for name in names]
IDS = [f"{src.value}-{name}" for src, name in CASES]

# What each fixture must come out as, whatever the client dialect.
EXPECTED_TEXT = {
    "chat_text": "Hello world.",
    "chat_tools": "Checking.",
    "messages_text": "Hello there.",
    "messages_tools": "Looking it up.",
    "responses_text": "Hello.",
    "responses_tools": "",
}
EXPECTED_CALLS = {
    "chat_text": [],
    "messages_text": [],
    "responses_text": [],
    "chat_tools": [("call_6278", "get_weather"), ("call_99", "apply_patch")],
    "messages_tools": [("toolu_01A", "get_weather"), ("toolu_01B", "get_time")],
    "responses_tools": [("call_A", "get_weather"), ("call_B", "apply_patch"), ("call_C", "get_time")],
}


def openai_client(body: bytes) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://proxy.test/v1",
        api_key="sk-test",
        max_retries=0,
        http_client=httpx.Client(transport=sse_transport(body)),
    )


def anthropic_client(body: bytes) -> anthropic.Anthropic:
    # anthropic 2.12 runs on httpx2 and refuses an httpx.Client.
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return anthropic.Anthropic(
        base_url="http://proxy.test",
        api_key="sk-test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


@pytest.mark.parametrize(("source", "name"), CASES, ids=IDS)
def test_responses_stream_accumulator_accepts(source: Dialect, name: str) -> None:
    body = to_bytes(translate(source, Dialect.RESPONSES, upstream_events(name)))
    with openai_client(body).responses.stream(model="client-model", input="hi") as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    if source is Dialect.RESPONSES:
        return  # identity passes the upstream's bytes through untouched (Codex: empty output)
    assert final.model == "client-model"
    assert final.output_text == EXPECTED_TEXT[name]
    calls = [(i.call_id, i.name) for i in final.output if i.type in ("function_call", "custom_tool_call")]
    assert calls == EXPECTED_CALLS[name]
    for item in final.output:
        if item.type == "custom_tool_call":
            assert item.input.startswith("*** Begin Patch\n")
    assert final.usage is not None and final.usage.total_tokens > 0


@pytest.mark.parametrize(("source", "name"), CASES, ids=IDS)
def test_chat_stream_accumulator_accepts(source: Dialect, name: str) -> None:
    body = to_bytes(translate(source, Dialect.CHAT, upstream_events(name)))
    with openai_client(body).chat.completions.stream(
        model="client-model", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert (msg.content or "") == EXPECTED_TEXT[name]
    calls = [(c.id, c.function.name) for c in msg.tool_calls or []]
    assert calls == EXPECTED_CALLS[name]
    assert final.choices[0].finish_reason == ("tool_calls" if calls else "stop")
    for c in msg.tool_calls or []:
        assert isinstance(c.function.parsed_arguments, dict) or c.function.arguments.startswith("{")
    assert final.usage is not None and final.usage.total_tokens > 0


@pytest.mark.parametrize(("source", "name"), CASES, ids=IDS)
def test_chat_raw_stream_has_usage_chunk_then_done(source: Dialect, name: str) -> None:
    events = translate(source, Dialect.CHAT, upstream_events(name))
    assert events[-1].data == b"[DONE]"
    chunks = list(
        openai_client(to_bytes(events)).chat.completions.create(
            model="client-model",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1


def test_chat_without_include_usage_has_no_usage_chunk() -> None:
    events = translate(Dialect.RESPONSES, Dialect.CHAT, upstream_events("responses_text"), include_usage=False)
    assert all(b'"choices":[]' not in e.data for e in events)


@pytest.mark.parametrize(("source", "name"), CASES, ids=IDS)
def test_anthropic_stream_accumulator_accepts(source: Dialect, name: str) -> None:
    body = to_bytes(translate(source, Dialect.MESSAGES, upstream_events(name)))
    with anthropic_client(body).messages.stream(
        model="client-model", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    text = "".join(b.text for b in final.content if b.type == "text")
    assert text == EXPECTED_TEXT[name]
    calls = [(b.id, b.name) for b in final.content if b.type == "tool_use"]
    assert calls == EXPECTED_CALLS[name]
    assert final.stop_reason == ("tool_use" if calls else "end_turn")
    for b in final.content:
        if b.type == "tool_use" and b.name == "apply_patch":
            assert b.input["input"].startswith("*** Begin Patch\n")
        if b.type == "tool_use" and b.name == "get_weather":
            assert b.input == {"city": "Paris"}
    assert final.usage.output_tokens > 0


def test_responses_reasoning_signature_reaches_anthropic_client() -> None:
    body = to_bytes(translate(Dialect.RESPONSES, Dialect.MESSAGES, upstream_events("responses_tools")))
    with anthropic_client(body).messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    thinking = [b for b in final.content if b.type == "thinking"]
    assert thinking[0].thinking == "Thinking about tools."
    assert thinking[0].signature == "gAAAAB-enc@rs_01"


def test_chat_error_event_raises_api_error_in_sdk() -> None:
    t = StreamTranslator(Dialect.RESPONSES, Dialect.CHAT, model="m")
    events = t.feed(upstream_events("responses_text")[0])
    events += t.error_events(message="upstream died", type="server_error", code=None)
    with pytest.raises(openai.APIError, match="upstream died"):
        list(
            openai_client(to_bytes(events)).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )


def test_anthropic_error_event_raises_api_status_error() -> None:
    t = StreamTranslator(Dialect.CHAT, Dialect.MESSAGES, model="m")
    events = t.feed(upstream_events("chat_text")[0])
    events += t.error_events(message="Overloaded", type="overloaded_error", code=None)
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        anthropic_client(to_bytes(events)).messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        stream.get_final_message()


def test_responses_failed_is_reported_not_faked_as_success() -> None:
    t = StreamTranslator(Dialect.MESSAGES, Dialect.RESPONSES, model="m")
    events = t.feed(upstream_events("messages_text")[0])
    events += t.error_events(message="boom", type="api_error", code="upstream_error")
    assert events[-1].event == "response.failed"
    with (
        pytest.raises(RuntimeError, match=r"response\.completed"),
        openai_client(to_bytes(events)).responses.stream(model="m", input="hi") as stream,
    ):
        stream.get_final_response()


def test_upstream_error_event_becomes_client_error_event() -> None:
    err = SseEvent("error", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    ups = [upstream_events("messages_text")[0], err]
    out = translate(Dialect.MESSAGES, Dialect.CHAT, ups)
    assert b'"error"' in out[-1].data and b"Overloaded" in out[-1].data
    out = translate(Dialect.MESSAGES, Dialect.RESPONSES, ups)
    assert out[-1].event == "response.failed"
