"""The official openai SDK (strict stream accumulators included) accepts the fake."""

from __future__ import annotations

import openai
import pytest

from tests.fakes.base import FakeServer
from tests.fakes.openai_compat import OpenAICompatApp

Fake = FakeServer[OpenAICompatApp]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
def sdk(fake: Fake, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key=api_key, max_retries=0)


def test_chat_non_stream(sdk: openai.OpenAI, fake: Fake) -> None:
    done = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "echo: hi"
    assert done.usage is not None and done.usage.total_tokens == 3
    [recorded] = fake.requests
    assert recorded["headers"]["user-agent"].startswith("OpenAI/Python")
    assert recorded["json"] == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_stream_with_include_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_chat_stream_helper_assembles_tool_call(sdk: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
    with sdk.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "please call tool"}],
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]


def test_responses_stream_get_final_response(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model="gpt-5.5", input="hello there", instructions="be brief") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == "echo: hello there"
    assert final.usage is not None and final.usage.input_tokens == 4


def test_responses_stream_function_call_then_output(sdk: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}
    with sdk.responses.stream(model="gpt-4.1", input="call tool", tools=[tool]) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call"
    follow = sdk.responses.create(
        model="gpt-4.1",
        tools=[tool],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": "call tool"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert follow.output_text == "The tool returned: sunny"


def test_models_list(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["gpt-4o-mini", "gpt-4.1", "gpt-5.5"]
