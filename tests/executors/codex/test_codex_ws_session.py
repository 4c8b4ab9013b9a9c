"""A client WebSocket served by Codex accounts: one upstream socket kept for the client socket's
life, later turns forwarded incrementally, the backend's cap and failures handled unseen by the
client (docs/protocols/responses-websocket.md), through the real proxy onto the fake backend."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from infra.db import db_call
from observability.metrics import WS_UPSTREAM_RECONNECTS
from tests.executors.codex.conftest import import_account
from tests.fakes.base import Fault
from tests.support.proxy import usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MODEL = "gpt-5.5"


def _msg(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


@pytest.fixture
def key(live_proxy: Any, codex_fake: Any) -> str:
    from accounts.services import client_key_create

    _, raw = client_key_create(name="dev", owner_label="dev@example.com")
    return str(raw)


async def _open(live_proxy: Any, key: str) -> ClientConnection:
    url = live_proxy.url.replace("http://", "ws://") + "/v1/responses"
    return await connect(url, additional_headers={"authorization": f"Bearer {key}", "session-id": "sess-1"})


async def _turn(ws: ClientConnection, input_items: list[Any], previous: str | None = None) -> list[dict[str, Any]]:
    frame: dict[str, Any] = {"type": "response.create", "model": MODEL, "input": input_items, "store": False}
    if previous:
        frame["previous_response_id"] = previous
    await ws.send(json.dumps(frame))
    events = []
    while True:
        async with asyncio.timeout(15):
            event = json.loads(await ws.recv())
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "error"):
            return events


def _frames(fake: Any) -> list[dict[str, Any]]:
    return [f for entry in fake.app.ws_log for f in entry["frames"] if f and f.get("type") == "response.create"]


def _reconnects(reason: str) -> float:
    return float(WS_UPSTREAM_RECONNECTS.labels("codex", reason)._value.get())


async def _conversation(ws: ClientConnection, turns: int) -> list[str]:
    ids: list[str] = []
    for i in range(turns):
        events = await _turn(ws, [_msg(f"turn {i}")], ids[-1] if ids else None)
        assert events[-1]["type"] == "response.completed", events[-1]
        ids.append(events[-1]["response"]["id"])
    return ids


async def test_one_upstream_socket_and_incremental_turns(live_proxy: Any, codex_fake: Any, key: str) -> None:
    await db_call(import_account, codex_fake)
    async with await _open(live_proxy, key) as ws:
        ids = await _conversation(ws, 3)
    assert codex_fake.app.ws_opened_total == 1  # one upstream socket for the whole conversation
    first, second, third = _frames(codex_fake)
    assert "previous_response_id" not in first and first["input"] == [_msg("turn 0")]
    # later turns: only the new item, continuing the socket's last response
    assert second["previous_response_id"] == ids[0] and second["input"] == [_msg("turn 1")]
    assert third["previous_response_id"] == ids[1] and third["input"] == [_msg("turn 2")]
    rows = await usage_rows(3)
    assert [r.outcome for r in rows] == ["ok"] * 3 and all(r.surface == "responses.ws" for r in rows)
    for _ in range(50):  # the upstream socket closes with the client's
        if codex_fake.app.ws_open == 0:
            break
        await asyncio.sleep(0.05)
    assert codex_fake.app.ws_open == 0


async def test_backend_cap_reconnects_unseen(live_proxy: Any, codex_fake: Any, key: str) -> None:
    await db_call(import_account, codex_fake)
    before = _reconnects("websocket_connection_limit_reached")
    async with await _open(live_proxy, key) as ws:
        ids = await _conversation(ws, 1)
        codex_fake.app.ws_max_age = 0.2
        await asyncio.sleep(0.3)
        events = await _turn(ws, [_msg("after the cap")], ids[0])
        assert events[-1]["type"] == "response.completed"
    assert codex_fake.app.ws_opened_total == 2
    retried = _frames(codex_fake)[-1]
    # the new socket got the whole conversation, not the continuation it cannot know
    assert "previous_response_id" not in retried and retried["input"][0] == _msg("turn 0")
    assert retried["input"][-1] == _msg("after the cap") and len(retried["input"]) == 3
    assert _reconnects("websocket_connection_limit_reached") == before + 1
    rows = await usage_rows(2)
    assert [r.outcome for r in rows] == ["ok", "ok"] and rows[1].attempts == 1


async def test_socket_renewed_before_the_cap(live_proxy: Any, codex_fake: Any, key: str) -> None:
    await db_call(import_account, codex_fake, provider_config_extra={"websocket_max_age_seconds": 0.2})
    before = _reconnects("age")
    async with await _open(live_proxy, key) as ws:
        ids = await _conversation(ws, 1)
        await asyncio.sleep(0.3)
        assert (await _turn(ws, [_msg("later")], ids[0]))[-1]["type"] == "response.completed"
    assert codex_fake.app.ws_opened_total == 2 and _reconnects("age") == before + 1
    assert "previous_response_id" not in _frames(codex_fake)[-1]


async def test_failover_before_first_byte_of_a_later_turn(live_proxy: Any, codex_fake: Any, key: str) -> None:
    await db_call(import_account, codex_fake, label="codex-a")
    await db_call(import_account, codex_fake, label="codex-b")
    async with await _open(live_proxy, key) as ws:
        ids = await _conversation(ws, 1)
        codex_fake.faults.push(Fault.http(429).where(path="/backend-api/codex/responses"))
        events = await _turn(ws, [_msg("second")], ids[0])
        assert events[-1]["type"] == "response.completed"
        ids.append(events[-1]["response"]["id"])
        third = await _turn(ws, [_msg("third")], ids[-1])
        assert third[-1]["type"] == "response.completed"
    frames = _frames(codex_fake)
    # turn 2: incremental on the first socket (refused), then in full on a new one
    assert frames[1]["previous_response_id"] == ids[0]
    assert "previous_response_id" not in frames[2] and len(frames[2]["input"]) == 3
    # turn 3 continues on the new socket incrementally
    assert frames[3]["previous_response_id"] == ids[1] and frames[3]["input"] == [_msg("third")]
    assert codex_fake.app.ws_opened_total == 2
    rows = await usage_rows(3)
    assert [r.attempts for r in rows] == [1, 2, 1] and all(r.outcome == "ok" for r in rows)
    assert rows[1].account_id == rows[2].account_id != rows[0].account_id


async def test_cut_mid_turn_then_the_conversation_goes_on(live_proxy: Any, codex_fake: Any, key: str) -> None:
    await db_call(import_account, codex_fake)
    async with await _open(live_proxy, key) as ws:
        ids = await _conversation(ws, 1)
        codex_fake.faults.push(Fault.cut(4).where(path="/backend-api/codex/responses"))
        cut = await _turn(ws, [_msg("cut me")], ids[0])
        assert cut[-1]["type"] == "response.failed" and len(cut) > 1
        again = await _turn(ws, [_msg("once more")], ids[0])
        assert again[-1]["type"] == "response.completed"
    last = _frames(codex_fake)[-1]
    assert "previous_response_id" not in last and last["input"][-1] == _msg("once more")
    rows = await usage_rows(3)
    assert [r.outcome for r in rows] == ["ok", "upstream_error", "ok"]
