"""End to end through the real proxy (live_proxy) onto a Codex account (fake backend):
Codex CLI-shaped and Claude Code-shaped clients, each with a tool round trip."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from accounts.services import client_key_create
from tests.executors.codex.conftest import import_account
from tests.fakes.base import parse_sse

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SESSION = "01a2003d-c572-78e3-9ce8-b2376682ef2a"
EXEC_TOOL = {
    "type": "function",
    "name": "exec_command",
    "description": "run",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def setup(live_proxy: Any, codex_fake: Any) -> dict[str, Any]:
    account = import_account(codex_fake)
    _, key = client_key_create(name="dev", owner_label="dev@example.com")
    return {"url": live_proxy.url, "key": key, "fake": codex_fake, "account": account}


def _codex_cli_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "gpt-5.5",
        "stream": True,
        "input": items,
        "tools": [EXEC_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": SESSION,
        "text": {"verbosity": "low"},
        "client_metadata": {
            "x-codex-installation-id": "b586650c-0000-4000-8000-000000000000",
            "session_id": SESSION,
            "thread_id": SESSION,
            "turn_id": "01a2003e-1cc0-7000-8000-1",
            "x-codex-window-id": f"{SESSION}:0",
        },
    }


def _codex_cli_headers(key: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {key}",
        "accept": "text/event-stream",
        "originator": "codex_exec",
        "user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)",
        "session-id": SESSION,
        "thread-id": SESSION,
        "x-client-request-id": SESSION,
        "x-codex-window-id": f"{SESSION}:0",
        "x-codex-beta-features": "remote_compaction_v2",
        "x-codex-turn-metadata": json.dumps(
            {
                "session_id": SESSION,
                "turn_id": "01a2003e-1cc0-7000-8000-1",
                "request_kind": "turn",
                "sandbox": "seccomp",
            }
        ),
    }


def test_codex_cli_tool_round_trip(setup: dict[str, Any]) -> None:
    fake = setup["fake"]
    items = [
        {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "base"}]},
        {"type": "message", "id": "msg_2", "role": "user", "content": [{"type": "input_text", "text": "call tool"}]},
    ]
    with httpx.Client(base_url=setup["url"] + "/v1", timeout=30) as client:
        r1 = client.post("/responses", json=_codex_cli_body(items), headers=_codex_cli_headers(setup["key"]))
        assert r1.status_code == 200 and r1.headers["content-type"].startswith("text/event-stream")
        events = [e.json() for e in parse_sse(r1.text)]
        assert not any(e["type"].startswith("codex.") for e in events)
        call = next(e["item"] for e in events if e["type"] == "response.output_item.done")
        assert call["type"] == "function_call" and events[-1]["type"] == "response.completed"
        # Codex runs the tool and resends the whole history (stateless, store:false)
        items += [
            call,
            {"type": "function_call_output", "id": "fco_1", "call_id": call["call_id"], "output": "TOOL_OK"},
        ]
        r2 = client.post("/responses", json=_codex_cli_body(items), headers=_codex_cli_headers(setup["key"]))
    events = [e.json() for e in parse_sse(r2.text)]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "The tool returned: TOOL_OK"
    sent = [r for r in fake.requests if r["path"] == "/backend-api/codex/responses"]
    assert len(sent) == 2
    for r in sent:
        h = r["headers"]
        # the caller's identity passes through; the fingerprint is the proxy's own
        assert h["session-id"] == SESSION and h["x-codex-window-id"] == f"{SESSION}:0"
        assert h["originator"] == "codex_cli_rs" and "Debian" not in h["user-agent"]
        assert r["json"]["client_metadata"]["turn_id"] == "01a2003e-1cc0-7000-8000-1"
        assert r["json"]["client_metadata"]["x-codex-installation-id"] == "b586650c-0000-4000-8000-000000000000"


def test_claude_code_tool_round_trip(setup: dict[str, Any]) -> None:
    fake = setup["fake"]
    tool = {
        "name": "Bash",
        "description": "run",
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"cmd": {"type": "string"}},
            "required": ["cmd"],
            "additionalProperties": False,
        },
    }
    body: dict[str, Any] = {
        "model": "gpt-5.5",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.1;"},
            {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "please call tool", "cache_control": {"type": "ephemeral"}}],
            }
        ],
        "tools": [tool],
        "metadata": {"user_id": json.dumps({"device_id": "d", "account_uuid": "", "session_id": "s"})},
    }
    headers = {
        "x-api-key": setup["key"],
        "anthropic-version": "2023-06-01",
        "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    }
    with httpx.Client(base_url=setup["url"], timeout=30) as client:
        r1 = client.post("/v1/messages?beta=true", json=body, headers=headers)
        assert r1.status_code == 200, r1.text
        msgs = parse_sse(r1.text)
        assert all(m.event for m in msgs) and msgs[-1].event == "message_stop"
        start = next(m.json() for m in msgs if m.event == "content_block_start")
        assert start["content_block"]["type"] == "tool_use" and start["content_block"]["name"] == "Bash"
        delta = next(m.json() for m in msgs if m.event == "message_delta")
        assert delta["delta"]["stop_reason"] == "tool_use"
        tool_id = start["content_block"]["id"]
        body["messages"] += [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"cmd": "echo TOOL_OK"}}],
            },
            {
                "role": "user",
                "content": [{"tool_use_id": tool_id, "type": "tool_result", "content": "TOOL_OK", "is_error": False}],
            },
        ]
        r2 = client.post("/v1/messages?beta=true", json=body, headers=headers)
    assert r2.status_code == 200
    text = "".join(m.json()["delta"].get("text", "") for m in parse_sse(r2.text) if m.event == "content_block_delta")
    assert text == "The tool returned: TOOL_OK"
    sent = [r for r in fake.requests if r["path"] == "/backend-api/codex/responses"]
    assert all(r["json"]["store"] is False and "max_output_tokens" not in r["json"] for r in sent)
    # a stateless client re-sending its conversation keeps one content-derived session id
    assert sent[0]["headers"]["session-id"] == sent[1]["headers"]["session-id"]


async def test_openai_sdk_non_stream_and_previous_response_id(setup: dict[str, Any]) -> None:
    fake = setup["fake"]
    client = openai.AsyncOpenAI(base_url=setup["url"] + "/v1", api_key=setup["key"], max_retries=0)
    first = await client.responses.create(model="gpt-5.5", input="my name is Ada", temperature=0.5)
    assert first.output_text == "echo: my name is Ada"
    second = await client.responses.create(model="gpt-5.5", input="what is my name?", previous_response_id=first.id)
    assert second.output_text
    await client.close()
    sent = [r for r in fake.requests if r["path"] == "/backend-api/codex/responses"]
    # the continuation inherits the first answer's session through the snapshot's provider_meta
    assert sent[0]["headers"]["session-id"] == sent[1]["headers"]["session-id"]
    assert "previous_response_id" not in sent[1]["json"] and len(sent[1]["json"]["input"]) == 3
