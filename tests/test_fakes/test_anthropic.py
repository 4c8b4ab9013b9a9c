"""The fake Anthropic API behaves as published: the official `anthropic` SDK accepts it
(its strict stream accumulator included), and its headers, pages and faults have the
documented shapes."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.fakes.anthropic import MODELS, AnthropicApp
from tests.fakes.base import FakeServer, Fault, parse_sse

KEY = "sk-ant-fake-test"
Fake = FakeServer[AnthropicApp]


@pytest.fixture(scope="module")
def _server() -> Iterator[Fake]:
    server = FakeServer(AnthropicApp(keys=(KEY,), chunks=4)).start()
    yield server
    server.stop()


@pytest.fixture
def fake(_server: Fake) -> Fake:
    _server.reset()
    return _server


@pytest.fixture
def sdk(fake: Fake) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key=KEY, max_retries=0)


def test_sdk_stream_accumulates_thinking_with_signature_and_text(sdk: anthropic.Anthropic, fake: Fake) -> None:
    with sdk.messages.stream(
        model=MODELS[0],
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "hello there"}],
    ) as stream:
        message = stream.get_final_message()
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.signature.startswith("sig_")
    assert text.type == "text" and text.text == "echo: hello there"
    assert message.usage.output_tokens > 0 and message.stop_reason == "end_turn"
    # Sent back unchanged, the block is accepted; the SDK's request carried the version header.
    again = sdk.messages.create(
        model=MODELS[0],
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": message.content},  # type: ignore[typeddict-item]
            {"role": "user", "content": "more"},
        ],
    )
    assert again.content[-1].type == "text"
    assert fake.requests[0]["headers"]["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION
    assert fake.violations == []


def test_sdk_count_tokens_and_paged_model_list(sdk: anthropic.Anthropic) -> None:
    counted = sdk.messages.count_tokens(model=MODELS[0], messages=[{"role": "user", "content": "one two"}])
    assert counted.input_tokens == 2
    assert [m.id for m in sdk.models.list(limit=1)] == list(MODELS)  # the SDK follows has_more/last_id


def test_rate_limit_headers_and_request_id(fake: Fake) -> None:
    body = {"model": MODELS[0], "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    resp = httpx.post(fake.url + "/v1/messages", json=body, headers=headers)
    assert resp.headers["request-id"].startswith("req_")
    for kind in ("requests", "tokens"):
        assert int(resp.headers[f"anthropic-ratelimit-{kind}-remaining"]) < int(
            resp.headers[f"anthropic-ratelimit-{kind}-limit"]
        )
        assert resp.headers[f"anthropic-ratelimit-{kind}-reset"].endswith("Z")
    fake.faults.push(Fault.http(429))
    limited = httpx.post(fake.url + "/v1/messages", json=body, headers=headers)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_stream_error_fault_is_an_error_event_after_the_handshake(fake: Fake) -> None:
    fake.faults.push(Fault.stream_error(after=2))
    body = {"model": MODELS[0], "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    events = parse_sse(httpx.post(fake.url + "/v1/messages", json=body, headers=headers).content)
    assert [e.event for e in events] == ["message_start", "ping", "error"]
    assert events[-1].json() == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_overloaded_status_has_the_documented_body(sdk: anthropic.Anthropic, fake: Fake) -> None:
    fake.faults.push(Fault.http(529))
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk.messages.create(model=MODELS[0], max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 529
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
