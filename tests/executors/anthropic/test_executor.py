"""Anthropic API accounts through the real proxy onto the fake Anthropic API."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from tests.executors.anthropic.conftest import KEYS, MODEL, Pool
from tests.fakes.base import Fault, parse_sse
from tests.support.proxy import usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

VERSION = {"anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "hello there"}]


async def _post(pool: Pool, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as client:
        return await client.post(pool.url + path, json=body, headers=pool.headers(**VERSION, **headers))


async def test_messages_pass_through_with_headers_thinking_and_caching(pool: Pool) -> None:
    system = [{"type": "text", "text": "You are terse. " * 20, "cache_control": {"type": "ephemeral"}}]
    body = {
        "model": MODEL,
        "max_tokens": 256,
        "system": system,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": USER,
    }
    beta = "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31"
    first = await _post(pool, "/v1/messages", body, **{"anthropic-beta": beta})
    assert first.status_code == 200, first.text
    answer = first.json()
    thinking, _text = answer["content"]
    assert thinking["type"] == "thinking" and thinking["signature"].startswith("sig_")
    assert answer["usage"]["cache_creation_input_tokens"] > 0
    sent = pool.model_calls()[-1]
    assert sent["headers"]["anthropic-beta"] == beta and sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["headers"]["x-api-key"] == KEYS[0] and "authorization" not in sent["headers"]
    assert sent["json"] == body  # the client's body, unchanged
    # The next turn sends the thinking block back with its signature, and reads the cache.
    follow = {**body, "messages": [*USER, {"role": "assistant", "content": answer["content"]}, *USER]}
    second = await _post(pool, "/v1/messages", follow)
    assert second.status_code == 200, second.text
    assert second.json()["usage"]["cache_read_input_tokens"] == answer["usage"]["cache_creation_input_tokens"]
    assert pool.fake.violations == []


async def test_stream_is_relayed_as_it_arrives(pool: Pool) -> None:
    pool.fake.faults.push(Fault.pacing(chunks=6, interval=0.25))
    body = {"model": MODEL, "max_tokens": 64, "stream": True, "messages": USER}
    started = time.monotonic()
    arrivals: list[float] = []
    raw = b""
    async with (
        httpx.AsyncClient(timeout=20) as client,
        client.stream("POST", pool.url + "/v1/messages", json=body, headers=pool.headers(**VERSION)) as resp,
    ):
        assert resp.status_code == 200
        async for chunk in resp.aiter_bytes():
            arrivals.append(time.monotonic() - started)
            raw += chunk
    kinds = [m.event for m in parse_sse(raw)]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == ["message_delta", "message_stop"]
    # The first bytes came well before the paced upstream finished (~2 s of pacing).
    assert arrivals[0] < arrivals[-1] - 1.0, arrivals


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_and_responses_clients_are_translated(pool: Pool, stream: bool) -> None:
    chat = await _post(pool, "/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": stream})
    assert chat.status_code == 200, chat.text
    responses = await _post(pool, "/v1/responses", {"model": MODEL, "input": "hello there", "stream": stream})
    assert responses.status_code == 200, responses.text
    if stream:
        assert "data: [DONE]" in chat.text and "response.completed" in responses.text
    else:
        assert chat.json()["choices"][0]["message"]["content"] == "echo: hello there"
        assert responses.json()["output"][-1]["content"][0]["text"] == "echo: hello there"
    for call in pool.model_calls():
        assert isinstance(call["json"]["max_tokens"], int)
    assert pool.fake.violations == []


async def test_count_tokens_is_forwarded_for_an_exact_count(pool: Pool) -> None:
    body = {"model": MODEL, "system": "count me", "messages": [{"role": "user", "content": "one two three"}]}
    resp = await _post(pool, "/v1/messages/count_tokens", body)
    assert resp.status_code == 200, resp.text
    counted = [r for r in pool.fake.requests if r["path"] == "/v1/messages/count_tokens"]
    assert len(counted) == 1 and counted[0]["json"] == body
    assert resp.json() == {"input_tokens": 5}  # the fake's own count (words), not the local one
    assert pool.fake.violations == []
    [row] = await usage_rows(1)
    assert (row.surface, row.input_tokens, row.usage_estimated) == ("messages.count_tokens", 5, False)
    assert row.account_id == pool.accounts[0].id


async def test_429_fails_over_and_cools_the_account_until_its_reset(pool: Pool) -> None:
    from state.cooldown import cooldowns_list
    from statestore import get_store

    pool.fake.faults.push(Fault.http(429, headers={"retry-after": "30"}))
    resp = await _post(pool, "/v1/messages", {"model": MODEL, "max_tokens": 16, "messages": USER})
    assert resp.status_code == 200, resp.text
    served_by = [r["headers"]["x-api-key"] for r in pool.model_calls()]
    assert served_by == [KEYS[0], KEYS[1]]
    cooling = await cooldowns_list(get_store(), account_id=pool.accounts[0].id)
    assert cooling and 25 < cooling[0].remaining <= 30


@pytest.mark.parametrize(
    "fault",
    [
        Fault.http(529),
        Fault.stream_error({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ],
    ids=["529", "overloaded-event-before-content"],
)
async def test_overloaded_fails_over(pool: Pool, fault: Fault) -> None:
    pool.fake.faults.push(fault)
    body = {"model": MODEL, "max_tokens": 16, "stream": True, "messages": USER}
    resp = await _post(pool, "/v1/messages", body)
    assert resp.status_code == 200 and "event: message_stop" in resp.text and "event: error" not in resp.text
    assert [r["headers"]["x-api-key"] for r in pool.model_calls()] == [KEYS[0], KEYS[1]]


async def test_revoked_key_marks_the_account_and_another_serves(pool: Pool) -> None:
    from accounts.models import UpstreamAccount
    from infra.db import db_call

    pool.fake.app.keys.discard(KEYS[0])
    resp = await _post(pool, "/v1/messages", {"model": MODEL, "max_tokens": 16, "messages": USER})
    assert resp.status_code == 200, resp.text
    state = await db_call(lambda: UpstreamAccount.objects.get(id=pool.accounts[0].id).state)
    assert state == "auth_failed"
    assert [v["rule"] for v in pool.fake.violations] == ["anthropic.auth"]


async def test_rate_limit_headers_become_quota_readings(pool: Pool) -> None:
    from state.quota import quota_snapshots
    from statestore import get_store

    resp = await _post(pool, "/v1/messages", {"model": MODEL, "max_tokens": 16, "messages": USER})
    assert resp.status_code == 200
    readings = await quota_snapshots(get_store(), account_id=pool.accounts[0].id)
    assert [(r.family, r.window) for r in readings] == [(MODEL, "requests")]
    assert 0 < readings[0].used_percent < 1 and readings[0].resets_at is not None


async def test_usage_is_recorded_and_priced_in_money(pool: Pool) -> None:
    resp = await _post(pool, "/v1/messages", {"model": MODEL, "max_tokens": 16, "messages": USER})
    assert resp.status_code == 200
    [row] = await usage_rows(1)
    usage = resp.json()["usage"]
    assert (row.input_tokens, row.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert row.account_id == pool.accounts[0].id
    assert row.cost_nanousd and row.cost_nanousd > 0 and row.price_source == "list"


def test_fake_answers_are_json_events() -> None:
    """The stream helper's events parse as the documented objects (sanity of the fake)."""
    from tests.fakes.anthropic import _stream

    events = list(
        _stream(
            "msg_1",
            MODEL,
            [{"type": "text", "text": "a b"}],
            "end_turn",
            {"input_tokens": 1, "output_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            2,
        )
    )
    types = [orjson.loads(e.split(b"data: ", 1)[1])["type"] for e in events]
    assert types == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip


async def test_a_spent_window_sends_new_conversations_elsewhere(pool: Pool) -> None:
    """Quota-aware routing: account A's requests bucket is spent (its headers say remaining 0),
    so with equal priority new conversations go to B."""
    from accounts.models import UpstreamAccount
    from accounts.selectors import caches_clear
    from infra.db import db_call

    await db_call(lambda: UpstreamAccount.objects.update(priority=0))
    caches_clear()
    bucket = pool.fake.app.bucket(KEYS[0])["requests"]
    bucket.started, bucket.used = time.time(), bucket.limit - 1
    for i in range(2):  # round robin: each account answers once and reports its window
        await _post(pool, "/v1/messages", {"model": MODEL, "max_tokens": 16, "messages": _user(f"warm {i}")})
    before = len(pool.model_calls())
    for i in range(6):
        resp = await _post(pool, "/v1/messages", {"model": MODEL, "max_tokens": 16, "messages": _user(f"new {i}")})
        assert resp.status_code == 200
    assert {r["headers"]["x-api-key"] for r in pool.model_calls()[before:]} == {KEYS[1]}


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
