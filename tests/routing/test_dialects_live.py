"""Any client on an OpenAI-compatible (Chat) upstream: Responses and Anthropic clients through
the proxy, with the official SDKs as strict judges."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

WEATHER_TOOL_OPENAI = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    fake_openai.app.chunks = 5
    return seed(live_proxy.url, fake_openai)


def _oa(proxy: ProxySetup) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.v1, api_key=proxy.key, max_retries=0)


def _an(proxy: ProxySetup) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=proxy.key, max_retries=0)


async def test_responses_stream_strict_helper(proxy: ProxySetup) -> None:
    client = _oa(proxy)
    async with client.responses.stream(model="gpt-4o-mini", input="hello responses") as stream:
        final = await stream.get_final_response()
    assert "hello responses" in final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0
    # the upstream was spoken to in its own dialect
    assert proxy.fake.requests[-1]["path"] == "/v1/chat/completions"
    rows = await usage_rows(1)
    assert rows[0].surface == "responses" and rows[0].outcome == "ok" and rows[0].output_tokens > 0
    await client.close()


async def test_responses_non_stream_and_previous_response_id(proxy: ProxySetup) -> None:
    client = _oa(proxy)
    first = await client.responses.create(model="gpt-4o-mini", input="my name is Ada")
    assert first.output_text
    second = await client.responses.create(model="gpt-4o-mini", input="what is my name?", previous_response_id=first.id)
    assert second.output_text
    sent = proxy.fake.requests[-1]["json"]["messages"]
    texts = [m.get("content") for m in sent]
    # the continuation carried the whole conversation, including the first answer
    assert any("my name is Ada" in str(t) for t in texts)
    assert any(m["role"] == "assistant" for m in sent)
    assert "what is my name?" in str(texts[-1])
    await client.close()


async def test_unknown_previous_response_id_is_openai_400(proxy: ProxySetup) -> None:
    client = _oa(proxy)
    with pytest.raises(openai.BadRequestError) as exc:
        await client.responses.create(model="gpt-4o-mini", input="x", previous_response_id="resp_nope")
    assert exc.value.code == "previous_response_not_found"
    assert proxy.fake.requests == []
    await client.close()


async def test_responses_tool_round_trip_and_five_turns(proxy: ProxySetup) -> None:
    client = _oa(proxy)
    async with client.responses.stream(
        model="gpt-4o-mini", input="call tool get_weather please", tools=[WEATHER_TOOL_OPENAI]
    ) as stream:
        final = await stream.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    call_id = calls[0].call_id
    # the tool result travels back, stateless, with the call id preserved exactly
    history: list[Any] = [
        {"role": "user", "content": "call tool get_weather please"},
        {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": call_id, "output": "sunny"},
    ]
    async with client.responses.stream(model="gpt-4o-mini", input=history, tools=[WEATHER_TOOL_OPENAI]) as stream:
        answer = await stream.get_final_response()
    assert "sunny" in answer.output_text
    sent = proxy.fake.requests[-1]["json"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call_id and sent[2]["tool_call_id"] == call_id
    # three more turns via previous_response_id
    prev = answer.id
    for turn in range(3):
        async with client.responses.stream(
            model="gpt-4o-mini", input=f"turn {turn}", previous_response_id=prev
        ) as stream:
            r = await stream.get_final_response()
        assert f"turn {turn}" in r.output_text
        prev = r.id
    assert len(proxy.fake.requests[-1]["json"]["messages"]) >= 9
    await client.close()


async def test_anthropic_stream_tool_round_trip(proxy: ProxySetup) -> None:
    client = _an(proxy)
    async with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=200,
        messages=[{"role": "user", "content": "call tool get_weather for Paris"}],
        tools=[WEATHER_TOOL_ANTHROPIC],  # type: ignore[list-item]
    ) as stream:
        msg = await stream.get_final_message()
    assert msg.stop_reason == "tool_use"
    tool_use = next(b for b in msg.content if b.type == "tool_use")
    assert tool_use.name == "get_weather" and isinstance(tool_use.input, dict)
    async with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=200,
        messages=[
            {"role": "user", "content": "call tool get_weather for Paris"},
            {"role": "assistant", "content": [b.model_dump() for b in msg.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "rainy"}]},
        ],
        tools=[WEATHER_TOOL_ANTHROPIC],  # type: ignore[list-item]
    ) as stream:
        answer = await stream.get_final_message()
    text = "".join(b.text for b in answer.content if b.type == "text")
    assert "rainy" in text and answer.stop_reason == "end_turn"
    sent = proxy.fake.requests[-1]["json"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == tool_use.id and sent[2]["tool_call_id"] == tool_use.id
    rows = await usage_rows(2)
    assert all(r.surface == "messages" and r.outcome == "ok" for r in rows)
    await client.close()


async def test_anthropic_five_turns_with_system(proxy: ProxySetup) -> None:
    client = _an(proxy)
    messages: list[Any] = []
    for turn in range(5):
        messages.append({"role": "user", "content": f"turn number {turn}"})
        msg = await client.messages.create(
            model="gpt-4o-mini", max_tokens=100, system=[{"type": "text", "text": "be brief"}], messages=messages
        )
        text = "".join(b.text for b in msg.content if b.type == "text")
        assert f"turn number {turn}" in text
        messages.append({"role": "assistant", "content": text})
    sent = proxy.fake.requests[-1]["json"]["messages"]
    assert sent[0] == {"role": "system", "content": "be brief"} or sent[0]["role"] in ("system", "developer")
    assert len(sent) == 10
    await client.close()


async def test_anthropic_errors_and_count_tokens(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        bad = await http.post(
            proxy.url + "/v1/messages?beta=true",
            headers={"x-api-key": proxy.key, "anthropic-version": "2023-06-01"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
        )
        unauth = await http.post(proxy.url + "/v1/messages", json={"model": "m"})
        counted = await http.post(
            proxy.url + "/v1/messages/count_tokens",
            headers={"x-api-key": proxy.key, "anthropic-version": "2023-06-01"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello world, count me"}]},
        )
    assert bad.status_code == 400
    assert bad.json()["type"] == "error" and bad.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in bad.json()["error"]["message"]
    assert unauth.status_code == 401 and unauth.json()["error"]["type"] == "authentication_error"
    assert counted.status_code == 200 and 3 < counted.json()["input_tokens"] < 50
    assert proxy.fake.requests == []


async def test_untranslatable_tool_is_a_400_naming_the_field(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            proxy.v1 + "/responses",
            headers=proxy.headers(),
            # A tool kind Chat cannot express at all (an offered hosted tool would be dropped).
            json={"model": "gpt-4o-mini", "input": "search", "tools": [{"type": "tool_search"}]},
        )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] and "tools" in err["param"]
    assert proxy.fake.requests == []


async def test_responses_stream_events_are_well_ordered(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            proxy.v1 + "/responses",
            headers=proxy.headers(),
            json={"model": "gpt-4o-mini", "input": "hi", "stream": True},
        )
    names = [line[7:] for line in r.text.split("\n") if line.startswith("event: ")]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    datas = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: ")]
    seqs = [d["sequence_number"] for d in datas]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.parametrize("stream", [False, True])
async def test_offered_hosted_tool_is_dropped_and_reported(proxy: ProxySetup, settings: Any, stream: bool) -> None:
    """Default account settings: Codex CLI's offered `web_search` cannot run on a Chat
    upstream, so it is dropped; the drop shows in a response header, the usage record's attempt
    and a /metrics counter."""
    from tests.observability.support import TOKEN, delta, scrape

    settings.PROXY_METRICS_TOKEN = TOKEN
    before = await scrape(proxy.url)
    body = {
        "model": "gpt-4o-mini",
        "input": "hi",
        "stream": stream,
        "tools": [{"type": "web_search"}, WEATHER_TOOL_OPENAI],
    }
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(proxy.v1 + "/responses", headers=proxy.headers(), json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-llmproxy-dropped-tools"] == "web_search"
    sent_tools = proxy.fake.requests[-1]["json"]["tools"]
    assert [t["function"]["name"] for t in sent_tools] == ["get_weather"]
    (row,) = await usage_rows(1)
    assert row.outcome == "ok" and row.attempt_log[-1]["dropped_tools"] == ["web_search"]
    after = await scrape(proxy.url)
    assert delta(before, after, "llmproxy_hosted_tools_dropped_total", surface="responses", tool="web_search") == 1


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        (
            {"tools": [{"type": "web_search"}, WEATHER_TOOL_OPENAI], "tool_choice": {"type": "web_search"}},
            "tool_choice",
        ),
        ({"tools": [{"type": "web_search"}], "tool_choice": "required"}, "tools[0].type"),
    ],
)
async def test_forced_hosted_tool_is_a_400_naming_the_field(
    proxy: ProxySetup, patch: dict[str, Any], param: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            proxy.v1 + "/responses", headers=proxy.headers(), json={"model": "gpt-4o-mini", "input": "hi", **patch}
        )
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert "x-llmproxy-dropped-tools" not in r.headers
    assert proxy.fake.requests == []  # refused before any upstream call
    (row,) = await usage_rows(1)
    assert (row.outcome, row.status_code) == ("rejected", 400)


@pytest.mark.parametrize("surface", ["responses", "messages"])
async def test_translated_streams_are_incremental_too(proxy: ProxySetup, surface: str) -> None:
    import time

    proxy.fake.app.chunks, proxy.fake.app.interval = 20, 0.05  # ~1 s of upstream pacing
    if surface == "responses":
        url, body, headers = proxy.v1 + "/responses", {"model": "gpt-4o-mini", "input": "x " * 30, "stream": True}, {}
        delta = b"response.output_text.delta"
    else:
        url = proxy.url + "/v1/messages"
        body = {
            "model": "gpt-4o-mini",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "x " * 30}],
        }
        headers, delta = {"anthropic-version": "2023-06-01"}, b"content_block_delta"
    times: list[float] = []
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", url, json=body, headers={**proxy.headers(), **headers}) as resp,
    ):
        opened = time.perf_counter()
        async for line in resp.aiter_lines():
            if line.startswith("event: ") and delta in line.encode():
                times.append(time.perf_counter() - opened)
        total = time.perf_counter() - opened
    assert total >= 0.9 and len(times) >= 10
    assert times[0] < total / 3, f"first delta at {times[0]:.3f}s of {total:.3f}s"
    assert times[len(times) // 2] - times[0] > 0.3, "deltas arrived in a burst"
