"""The client WebSocket on /v1/responses (routing/api/websocket.py) through the real proxy,
on an OpenAI-compatible (Chat) upstream: the conversation is expanded from the socket's own
memory. Codex upstreams (kept upstream sockets) are in tests/executors/codex/test_codex_ws_session.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "my name is Ada"}]}


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    fake_openai.app.chunks = 3
    return seed(live_proxy.url, fake_openai, accounts=2)


def _ws_url(proxy: ProxySetup) -> str:
    return proxy.url.replace("http://", "ws://") + "/v1/responses"


async def _open(proxy: ProxySetup, key: str | None = None) -> ClientConnection:
    return await connect(_ws_url(proxy), additional_headers={"authorization": f"Bearer {key or proxy.key}"})


async def _turn(ws: ClientConnection, **body: Any) -> list[dict[str, Any]]:
    """Send one response.create; read frames up to the terminal event (or an error frame)."""
    await ws.send(json.dumps({"type": "response.create", **body}))
    events: list[dict[str, Any]] = []
    while True:
        async with asyncio.timeout(10):
            raw = await ws.recv()
        assert isinstance(raw, str), "every event is a text frame"
        event = json.loads(raw)
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "response.incomplete", "error"):
            return events


def _text(events: list[dict[str, Any]]) -> str:
    final = events[-1]["response"]
    return "".join(p.get("text", "") for item in final["output"] for p in item.get("content") or [])


async def test_turns_continue_with_previous_response_id(proxy: ProxySetup) -> None:
    async with await _open(proxy) as ws:
        first = await _turn(ws, model="gpt-4o-mini", input=[USER], store=False)
        assert first[0]["type"] == "response.created" and first[-1]["type"] == "response.completed"
        assert "my name is Ada" in _text(first)
        follow = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "what is my name?"}]}
        second = await _turn(
            ws, model="gpt-4o-mini", input=[follow], previous_response_id=first[-1]["response"]["id"], store=False
        )
        assert second[-1]["type"] == "response.completed"
    # the upstream (stateless Chat) got the whole conversation on the second turn
    sent = proxy.fake.requests[-1]["json"]["messages"]
    texts = json.dumps(sent)
    assert "my name is Ada" in texts and "what is my name?" in texts and _text(first) in texts
    rows = await usage_rows(2)
    assert [r.surface for r in rows] == ["responses.ws", "responses.ws"]
    assert all(r.outcome == "ok" and r.output_tokens > 0 and r.ttfb_ms is not None for r in rows)
    assert len({r.request_id for r in rows}) == 2


async def test_prewarm_is_answered_locally_and_continued(proxy: ProxySetup) -> None:
    async with await _open(proxy) as ws:
        warm = await _turn(ws, model="gpt-4o-mini", input=[USER], generate=False)
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        assert not proxy.fake.requests  # no upstream call
        turn = await _turn(ws, model="gpt-4o-mini", input=[], previous_response_id=warm[-1]["response"]["id"])
        assert turn[-1]["type"] == "response.completed" and "my name is Ada" in _text(turn)
    rows = await usage_rows(2)
    assert rows[0].attempts == 0 and rows[1].attempts == 1


async def test_refused_turns_are_error_frames_and_socket_stays(proxy: ProxySetup) -> None:
    async with await _open(proxy) as ws:
        unknown = await _turn(ws, model="no-such-model", input=[USER])
        assert unknown == [unknown[-1]] and unknown[-1]["type"] == "error"
        assert unknown[-1]["status"] == 404 and unknown[-1]["error"]["code"] == "model_not_found"
        warm_unknown = await _turn(ws, model="no-such-model", input=[USER], generate=False)
        assert warm_unknown[-1]["status"] == 404
        missing = await _turn(ws, model="gpt-4o-mini", input=[USER], previous_response_id="resp_nope")
        assert missing[-1]["status"] == 400 and missing[-1]["error"]["code"] == "previous_response_not_found"
        await ws.send("not json")
        bad = json.loads(await ws.recv())
        assert bad["type"] == "error" and bad["status"] == 400
        ok = await _turn(ws, model="gpt-4o-mini", input=[USER])
        assert ok[-1]["type"] == "response.completed"
    rows = await usage_rows(4)
    assert sorted(r.outcome for r in rows) == ["ok", "rejected", "rejected", "rejected"]


async def test_upgrade_needs_a_valid_key(proxy: ProxySetup) -> None:
    with pytest.raises(InvalidStatus) as info:
        await _open(proxy, key="sk-wrong")
    assert info.value.response.status_code == 401
    assert b"invalid_api_key" in (info.value.response.body or b"")


async def test_failover_before_first_byte_is_invisible(proxy: ProxySetup) -> None:
    async with await _open(proxy) as ws:
        first = await _turn(ws, model="gpt-4o-mini", input=[USER])
        proxy.fake.faults.push(Fault.http(429))
        follow = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "again"}]}
        second = await _turn(ws, model="gpt-4o-mini", input=[follow], previous_response_id=first[-1]["response"]["id"])
        assert second[-1]["type"] == "response.completed"
    rows = await usage_rows(2)
    assert rows[1].attempts == 2 and rows[1].outcome == "ok"
    assert "my name is Ada" in json.dumps(proxy.fake.requests[-1]["json"])  # full history on the other account


async def test_cut_mid_turn_is_a_failed_event(proxy: ProxySetup) -> None:
    async with await _open(proxy) as ws:
        proxy.fake.faults.push(Fault.cut(4))
        events = await _turn(ws, model="gpt-4o-mini", input=[USER])
        assert events[-1]["type"] == "response.failed"
        again = await _turn(ws, model="gpt-4o-mini", input=[USER])
        assert again[-1]["type"] == "response.completed"
    rows = await usage_rows(2)
    assert [r.outcome for r in rows] == ["upstream_error", "ok"]


async def test_connection_cap_answers_the_documented_error(proxy: ProxySetup, settings: Any) -> None:
    settings.WS_MAX_AGE_SECONDS = 0.3
    async with await _open(proxy) as ws:
        await asyncio.sleep(0.4)
        events = await _turn(ws, model="gpt-4o-mini", input=[USER])
        assert events[-1]["status"] == 400
        assert events[-1]["error"]["code"] == "websocket_connection_limit_reached"
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_client_gone_mid_turn_is_recorded(proxy: ProxySetup) -> None:
    proxy.fake.app.interval = 0.2
    ws = await _open(proxy)
    await ws.send(json.dumps({"type": "response.create", "model": "gpt-4o-mini", "input": [USER]}))
    await ws.recv()
    await ws.close()
    rows = await usage_rows(1)
    assert rows[0].outcome == "client_disconnect"


async def test_key_limits_and_allow_list_apply_per_turn(proxy: ProxySetup) -> None:
    from accounts.services import client_key_create
    from infra.db import db_call

    _, limited = await db_call(
        lambda: client_key_create(name="ws-limited", requests_per_minute=1, allowed_models=("gpt-4o-mini",))
    )
    async with await _open(proxy, key=limited) as ws:
        forbidden = await _turn(ws, model="gpt-4.1", input=[USER])
        assert forbidden[-1]["status"] == 403 and forbidden[-1]["error"]["code"] == "permission_denied"
        ok = await _turn(ws, model="gpt-4o-mini", input=[USER])
        assert ok[-1]["type"] == "response.completed"
        limited_turn = await _turn(ws, model="gpt-4o-mini", input=[USER])
        assert limited_turn[-1]["status"] == 429 and limited_turn[-1]["error"]["code"] == "key_limit_exceeded"
        assert int(limited_turn[-1]["headers"]["retry-after"]) >= 1
        warm_other = await _turn(ws, model="gpt-4.1", input=[USER], generate=False)
        assert warm_other[-1]["status"] == 403  # a prewarm is checked like a turn
    rows = await usage_rows(4)
    assert sorted(r.outcome for r in rows) == ["ok", "rejected", "rejected", "rejected"]
    assert len(proxy.fake.requests) == 1  # only the allowed, unlimited turn reached the upstream


async def test_metrics_count_sockets_and_turns(proxy: ProxySetup, settings: Any) -> None:
    from tests.observability.support import TOKEN, delta, scrape, total

    settings.PROXY_METRICS_TOKEN = TOKEN
    before = await scrape(proxy.url)
    async with await _open(proxy) as ws:
        await _turn(ws, model="gpt-4o-mini", input=[USER])
        during = await scrape(proxy.url)
        assert total(during, "llmproxy_ws_open_sockets") == total(before, "llmproxy_ws_open_sockets") + 1
        await _turn(ws, model="gpt-4o-mini", input=[USER])
    for _ in range(50):  # the socket's end is recorded just after the close
        after = await scrape(proxy.url)
        if delta(before, after, "llmproxy_ws_turns_per_socket_count") == 1:
            break
        await asyncio.sleep(0.05)
    assert delta(before, after, "llmproxy_ws_turns_per_socket_count") == 1
    assert delta(before, after, "llmproxy_ws_turns_per_socket_sum") == 2
    assert total(after, "llmproxy_ws_open_sockets") == total(before, "llmproxy_ws_open_sockets")
    assert delta(before, after, "llmproxy_requests_total", surface="responses.ws", outcome="ok") == 2


async def test_closing_right_after_the_answer_loses_no_record(proxy: ProxySetup) -> None:
    # The client closes the moment response.completed arrives, while the proxy still settles
    # the turn: the record must be written all the same (and say ok).
    for _ in range(10):
        ws = await _open(proxy)
        events = await _turn(ws, model="gpt-4o-mini", input=[USER])
        assert events[-1]["type"] == "response.completed"
        await ws.close()
    rows = await usage_rows(10)
    assert len(rows) == 10 and all(r.outcome == "ok" for r in rows)
