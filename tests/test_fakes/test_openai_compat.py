"""The OpenAI-compatible fake validates and answers like api.openai.com."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import pytest

from tests.fakes.base import SSE_DONE, FakeServer, parse_sse
from tests.fakes.openai_compat import OpenAICompatApp

Fake = FakeServer[OpenAICompatApp]
USER_HI = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
RESP_TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}  # type: ignore[index]


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER_HI, **body})


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


# ------------------------------------------------------------------ auth & validation


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer sk-wrong-key-123"}, {"authorization": "Basic x"}])
def test_chat_rejects_missing_or_wrong_key_with_401_invalid_api_key(fake: Fake, headers: dict[str, str]) -> None:
    resp = httpx.post(
        fake.url + "/v1/chat/completions", headers=headers, json={"model": "gpt-4o-mini", "messages": USER_HI}
    )
    assert resp.status_code == 401
    err = error_of(resp)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_api_key"
    assert "sk-wrong-key-123" not in err["message"]  # keys are masked like OpenAI does


def test_non_json_body_is_a_400_parse_error(client: httpx.Client) -> None:
    resp = client.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert "could not parse the JSON body" in error_of(resp)["message"]


CHAT_INVALID: list[tuple[dict[str, Any], str | None, str | None]] = [
    # (body overrides, expected param, expected code)
    ({"model": None}, "model", "invalid_type"),
    ({"messages": None}, "messages", "missing_required_parameter"),
    ({"messages": []}, "messages", "empty_array"),
    ({"messages": "hi"}, "messages", "invalid_type"),
    ({"messages": ["hi"]}, "messages[0]", "invalid_type"),
    ({"messages": [{"content": "x"}]}, "messages[0].role", "missing_required_parameter"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type", "invalid_value"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages[0].content[0].text",
        "missing_required_parameter",
    ),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "missing_required_parameter"),
    ({"messages": [{"role": "tool", "tool_call_id": "call_1", "content": "x"}]}, "messages.[0].role", None),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {}}]}]},
        "messages[0].tool_calls[0].function.name",
        "missing_required_parameter",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "user", "content": "y"},
            ]
        },
        "messages.[1].role",
        None,
    ),
    ({"stream": "yes"}, "stream", "invalid_type"),
    ({"stream_options": {"include_usage": True}}, "stream_options", None),
    ({"stream": False, "stream_options": {"include_usage": True}}, "stream_options", None),
    ({"n": 2}, "n", None),
    ({"tools": {"type": "function"}}, "tools", "invalid_type"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name", "invalid_value"),
    ({"tools": [{"type": "function", "name": "flat"}]}, "tools[0].function", "missing_required_parameter"),
    ({"tool_choice": "auto"}, "tool_choice", None),
    ({"tools": [WEATHER_TOOL], "tool_choice": "always"}, "tool_choice", "invalid_value"),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "integer_below_min_value"),
    # api.openai.com: "Unrecognized request argument supplied: frobnicate", param and code null
    ({"frobnicate": 1}, None, None),
]


@pytest.mark.parametrize(("override", "param", "code"), CHAT_INVALID)
def test_chat_validation_errors_name_the_field(
    client: httpx.Client, override: dict[str, Any], param: str | None, code: str | None
) -> None:
    body = {"model": "gpt-4o-mini", "messages": USER_HI, **override}
    body = {k: v for k, v in body.items() if not (v is None and k == "messages")}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["type"] == "invalid_request_error"
    assert (err["param"], err["code"]) == (param, code)


def test_unknown_model_is_404_model_not_found(client: httpx.Client) -> None:
    resp = chat(client, model="gpt-nope")
    assert resp.status_code == 404
    err = error_of(resp)
    assert err["code"] == "model_not_found"
    assert "`gpt-nope` does not exist" in err["message"]


def test_responses_only_model_is_rejected_on_chat(client: httpx.Client) -> None:
    resp = chat(client, model="gpt-5.5")
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["param"] == "model"
    assert "only supported in v1/responses" in err["message"]
    assert client.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"}).status_code == 200


def test_unknown_route_is_openai_invalid_url(client: httpx.Client) -> None:
    resp = client.post("/v1/engines")
    assert resp.status_code == 404
    assert error_of(resp)["message"] == "Invalid URL (POST /v1/engines)"


# ---------------------------------------------------------------- chat non-stream


def test_chat_non_stream_is_deterministic_with_full_usage(fake: Fake, client: httpx.Client) -> None:
    fake.app.cached_tokens = 1
    fake.app.reasoning_tokens = 4
    resp = chat(client, messages=[{"role": "system", "content": "be brief"}, *USER_HI])
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "echo: hello there"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    # words: prompt "be brief" + "hello there" = 4; completion 3 words + 4 reasoning
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (4, 7, 11)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 4


def test_chat_reply_text_is_configurable_and_max_tokens_truncates(fake: Fake, client: httpx.Client) -> None:
    fake.app.reply = "one two three four five"
    body = chat(client, max_completion_tokens=2).json()
    assert body["choices"][0]["message"]["content"] == "one two"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


# -------------------------------------------------------------------- chat stream


def stream_chunks(client: httpx.Client, **body: Any) -> tuple[list[dict[str, Any]], str]:
    resp = chat(client, stream=True, **body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    msgs = parse_sse(resp.text)
    assert msgs[-1].data == "[DONE]"
    assert resp.text.endswith(SSE_DONE.decode())
    return [m.json() for m in msgs[:-1]], resp.text


def test_chat_stream_shape_with_include_usage(fake: Fake, client: httpx.Client) -> None:
    fake.app.reply = "a" * 40
    chunks, _ = stream_chunks(client, stream_options={"include_usage": True})
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(content) == 20 and "".join(content) == "a" * 40
    final, usage = chunks[-2], chunks[-1]
    assert final["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 1
    assert all(c["usage"] is None for c in chunks[:-1])


def test_chat_stream_without_include_usage_has_no_usage_chunk(client: httpx.Client) -> None:
    chunks, _ = stream_chunks(client)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)


def test_usage_on_final_choice_chunk_setting(fake: Fake, client: httpx.Client) -> None:
    fake.app.usage_on_final_choice_chunk = True
    chunks, _ = stream_chunks(client)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 5


def test_stream_pacing_is_real(fake: Fake) -> None:
    fake.app.reply = "x" * 10
    fake.app.chunks = 10
    fake.app.interval = 0.03
    arrivals: list[float] = []
    with httpx.Client(base_url=fake.url, headers={"authorization": f"Bearer {next(iter(fake.app.keys))}"}) as c:
        body = {"model": "gpt-4o-mini", "messages": USER_HI, "stream": True}
        with c.stream("POST", "/v1/chat/completions", json=body) as resp:
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    arrivals.append(time.monotonic())
    # role + 10 content + final + [DONE] = 13 events, 12 gaps of ~30 ms, each flushed on its own.
    # A busy machine may hand this reader two events in one read now and then (a ~0 gap), so
    # most gaps, not every one, must show the pacing; an unpaced fake has none.
    assert len(arrivals) == 13
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(g > fake.app.interval / 2 for g in gaps) >= len(gaps) * 2 // 3
    assert arrivals[-1] - arrivals[0] > 0.3


# -------------------------------------------------------------------------- tools


def test_chat_stream_tool_call_fragments_like_openai(client: httpx.Client) -> None:
    chunks, _ = stream_chunks(client, messages=[{"role": "user", "content": "please call tool"}], tools=[WEATHER_TOOL])
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    first = deltas[0]
    assert first["role"] == "assistant" and first["content"] is None
    call = first["tool_calls"][0]
    assert call["index"] == 0 and call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": ""}
    later = [d["tool_calls"][0] for d in deltas[1:]]
    assert all(set(t) == {"index", "function"} and set(t["function"]) == {"arguments"} for t in later)
    assert "".join(t["function"]["arguments"] for t in later) == '{"city": "Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_parallel_tool_calls_and_round_trip(client: httpx.Client) -> None:
    tools = [WEATHER_TOOL, {"type": "function", "function": {"name": "get_time"}}]
    body = chat(client, messages=[{"role": "user", "content": "call 2 tools"}], tools=tools).json()
    msg = body["choices"][0]["message"]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["get_weather", "get_time"]
    # The OpenAI SDK round-trips the assistant turn without a `content` key.
    history = [
        {"role": "user", "content": "call 2 tools"},
        {"role": "assistant", "tool_calls": msg["tool_calls"]},
        {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": msg["tool_calls"][1]["id"], "content": [{"type": "text", "text": "noon"}]},
    ]
    answer = chat(client, messages=history, tools=tools).json()
    assert answer["choices"][0]["message"]["content"] == "The tool returned: sunny; noon"


def test_tool_choice_forces_or_suppresses_calls(client: httpx.Client) -> None:
    forced = chat(client, tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert forced.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    none = chat(client, messages=[{"role": "user", "content": "call tool"}], tools=[WEATHER_TOOL], tool_choice="none")
    assert none.json()["choices"][0]["message"]["content"] == "echo: call tool"


# ------------------------------------------------------------------------- models


def test_models_list_and_get(client: httpx.Client) -> None:
    listing = client.get("/v1/models").json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["gpt-4o-mini", "gpt-4.1", "gpt-5.5"]
    assert set(listing["data"][0]) == {"id", "object", "created", "owned_by"}
    assert client.get("/v1/models/gpt-4.1").json()["id"] == "gpt-4.1"
    assert client.get("/v1/models/nope").status_code == 404


# ---------------------------------------------------------------------- responses


def test_responses_non_stream_object(fake: Fake, client: httpx.Client) -> None:
    fake.app.cached_tokens = 2
    body = client.post(
        "/v1/responses", json={"model": "gpt-4.1", "input": "hi there", "instructions": "be nice"}
    ).json()
    assert body["object"] == "response" and body["status"] == "completed" and body["id"].startswith("resp_")
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant" and item["status"] == "completed"
    assert item["content"] == [{"type": "output_text", "text": "echo: hi there", "annotations": [], "logprobs": []}]
    assert body["instructions"] == "be nice"
    assert body["usage"] == {
        "input_tokens": 4,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    }


def test_responses_stream_follows_canonical_order(fake: Fake, client: httpx.Client) -> None:
    fake.app.chunks = 3
    resp = client.post("/v1/responses", json={"model": "gpt-4.1", "input": "hi there", "stream": True})
    msgs = parse_sse(resp.text)
    events = [m.json() for m in msgs]
    assert all(m.event == e["type"] for m, e in zip(msgs, events, strict=True))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["usage"] is None
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "echo: hi there"
    assert events[-1]["response"]["output"][0] == events[-2]["item"]
    assert events[-1]["response"]["usage"]["total_tokens"] == 5


def test_responses_function_call_stream_and_round_trip(client: httpx.Client) -> None:
    resp = client.post(
        "/v1/responses", json={"model": "gpt-4.1", "input": "call tool", "tools": [RESP_TOOL], "stream": True}
    )
    events = [m.json() for m in parse_sse(resp.text)]
    types = [e["type"] for e in events]
    assert types[2] == "response.output_item.added" and events[2]["item"]["arguments"] == ""
    assert "response.function_call_arguments.delta" in types
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == '{"city": "Paris"}' and done["name"] == "get_weather"
    item = events[-1]["response"]["output"][0]
    assert item["type"] == "function_call" and item["call_id"].startswith("call_")
    follow = client.post(
        "/v1/responses",
        json={
            "model": "gpt-4.1",
            "tools": [RESP_TOOL],
            "input": [
                {"role": "user", "content": "call tool"},
                {"type": "function_call", "call_id": item["call_id"], "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": item["call_id"], "output": "sunny"},
            ],
        },
    ).json()
    assert follow["output"][0]["content"][0]["text"] == "The tool returned: sunny"


def test_previous_response_id_is_stored_per_key(client: httpx.Client) -> None:
    first = client.post("/v1/responses", json={"model": "gpt-4.1", "input": "one two"}).json()
    second = client.post(
        "/v1/responses", json={"model": "gpt-4.1", "input": "three", "previous_response_id": first["id"]}
    ).json()
    assert second["usage"]["input_tokens"] == 2 + 3 + 1  # stored input + stored output + new
    unstored = client.post("/v1/responses", json={"model": "gpt-4.1", "input": "x", "store": False}).json()
    resp = client.post("/v1/responses", json={"model": "gpt-4.1", "input": "y", "previous_response_id": unstored["id"]})
    assert resp.json() == {
        "error": {
            "message": f"Previous response with id '{unstored['id']}' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }


RESPONSES_INVALID: list[tuple[dict[str, Any], str | None, str | None]] = [
    ({"input": 3}, "input", "invalid_type"),
    ({"input": [{"type": "bogus"}]}, "input[0].type", "invalid_value"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role", "invalid_value"),
    (
        {"input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]},
        "input[0].content[0].type",
        "invalid_value",
    ),
    (
        {"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
        "input[0].arguments",
        "missing_required_parameter",
    ),
    ({"input": [{"type": "function_call_output", "call_id": "c9", "output": "x"}]}, "input", None),
    ({"tools": [WEATHER_TOOL]}, "tools[0].name", "missing_required_parameter"),
    ({"tools": [{"type": "teleport"}]}, "tools[0].type", "invalid_value"),
    ({"max_output_tokens": 5}, "max_output_tokens", "integer_below_min_value"),
    ({"messages": USER_HI}, "messages", "unknown_parameter"),
    ({"stream_options": {"include_usage": True}}, "stream_options", None),
]


@pytest.mark.parametrize(("override", "param", "code"), RESPONSES_INVALID)
def test_responses_validation_errors_name_the_field(
    client: httpx.Client, override: dict[str, Any], param: str | None, code: str | None
) -> None:
    resp = client.post("/v1/responses", json={"model": "gpt-4.1", "input": "hi", **override})
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert (err["param"], err["code"]) == (param, code)


def test_responses_max_output_tokens_gives_incomplete(fake: Fake, client: httpx.Client) -> None:
    fake.app.reply = " ".join(["w"] * 20)
    body = client.post("/v1/responses", json={"model": "gpt-4.1", "input": "hi", "max_output_tokens": 16}).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 16
