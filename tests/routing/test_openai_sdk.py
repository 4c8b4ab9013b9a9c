"""The official openai SDK, pointed at the proxy, completes chat calls."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


async def test_sdk_non_streaming_chat(proxy: ProxySetup) -> None:
    client = openai.AsyncOpenAI(base_url=proxy.v1, api_key=proxy.key, max_retries=0)
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "say hi"}]
    )
    assert completion.choices[0].message.content and "say hi" in completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0
    await client.close()


async def test_sdk_streaming_chat_with_usage(proxy: ProxySetup) -> None:
    client = openai.AsyncOpenAI(base_url=proxy.v1, api_key=proxy.key, max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert "stream please" in text
    assert usage is not None and usage.completion_tokens > 0
    rows = await usage_rows(1)
    assert rows[0].output_tokens == usage.completion_tokens
    await client.close()


async def test_sdk_stream_helper_with_tool_call(proxy: ProxySetup) -> None:
    client = openai.AsyncOpenAI(base_url=proxy.v1, api_key=proxy.key, max_retries=0)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    async with client.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "call tool get_weather"}],
        tools=tools,  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"
    await client.close()


async def test_sdk_sees_authentication_error(proxy: ProxySetup) -> None:
    client = openai.AsyncOpenAI(base_url=proxy.v1, api_key="sk-team-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    await client.close()


async def test_sdk_chat_tool_round_trip_and_five_turns(proxy: ProxySetup) -> None:
    client = openai.AsyncOpenAI(base_url=proxy.v1, api_key=proxy.key, max_retries=0)
    tools: Any = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {}}}},
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "call tool get_weather for Oslo"}]
    async with client.chat.completions.stream(model="gpt-4o-mini", messages=messages, tools=tools) as stream:
        final = await stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    # the assistant turn goes back with tool_calls and no content key, as the SDK sends it
    messages.append({"role": "assistant", "tool_calls": [call.model_dump()]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "snowing"})
    async with client.chat.completions.stream(model="gpt-4o-mini", messages=messages, tools=tools) as stream:
        answer = await stream.get_final_completion()
    assert "snowing" in (answer.choices[0].message.content or "")
    sent = proxy.fake.requests[-1]["json"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2]["tool_call_id"] == call.id
    for turn in range(3):
        messages.append({"role": "assistant", "content": answer.choices[0].message.content})
        messages.append({"role": "user", "content": f"and turn {turn}?"})
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert f"turn {turn}" in (answer.choices[0].message.content or "")
    assert len(proxy.fake.requests[-1]["json"]["messages"]) == len(messages)
    await client.close()
