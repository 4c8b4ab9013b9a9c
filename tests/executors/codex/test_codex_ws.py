"""The Codex executor's upstream WebSocket (docs/protocols/codex.md#transport-http-and-websocket product rule) against
the fake:
prefer_websockets models stream over WS, a refused handshake falls back to HTTP SSE (and is
remembered), other models stay on HTTP."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from executors.base import ModelFacts, UpstreamCall, UpstreamError
from executors.codex.executor import EXECUTOR
from executors.codex.websocket import WS_BETA
from formats import Dialect
from infra.db import db_call
from tests.executors.codex.conftest import account_info, import_account

pytestmark = pytest.mark.django_db(transaction=True)

MSG = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}
WS = ModelFacts(prefer_websockets=True)


async def _account(fake: Any, **kw: Any) -> Any:
    account = await db_call(import_account, fake, **kw)
    return await db_call(account_info, account.id)


def _call(info: Any, *, facts: ModelFacts = WS, stream: bool = True, model: str = "gpt-5.5") -> UpstreamCall:
    return UpstreamCall(
        account=info,
        dialect=Dialect.RESPONSES,
        body={"model": model, "input": [MSG], "stream": stream},
        stream=stream,
        upstream_model=model,
        client_headers={"session_id": "S-1"},
        request_id="r1",
        facts=facts,
    )


async def _collect(resp: Any) -> list[dict[str, Any]]:
    out = [orjson.loads(ev.data) async for ev in resp.events]
    await resp.aclose()
    return out


def _http(fake: Any) -> list[Any]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == "/backend-api/codex/responses"]


async def test_prefer_websockets_model_streams_over_ws(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    resp = await EXECUTOR.open(_call(info))
    events = await _collect(resp)
    types = [e["type"] for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_text.delta" in types and not any(t.startswith("codex.") for t in types)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "echo: say hi"
    assert not _http(codex_fake)  # nothing went over HTTP
    (conn,) = codex_fake.app.ws_log
    h = conn["headers"]
    assert conn["refused"] is None and conn["path"] == "/backend-api/codex/responses"
    assert h["openai-beta"] == WS_BETA
    assert h["originator"] == "codex_cli_rs"
    assert h["user-agent"] == "codex_cli_rs/0.169.0 (Mac OS 26.5.0; arm64) iTerm.app/3.6.10"
    assert h["session-id"] == "S-1" and h["chatgpt-account-id"] == "acc-fake-0001"
    assert h["authorization"].startswith("Bearer ") and "content-type" not in h
    (frame,) = conn["frames"]
    assert frame["type"] == "response.create" and frame["model"] == "gpt-5.5"
    assert frame["store"] is False and frame["stream"] is True and frame["input"] == [MSG]
    assert frame["client_metadata"]["x-codex-installation-id"] == info.secret["installation_id"]
    assert frame["prompt_cache_key"] == "S-1"


async def test_ws_non_stream_client_gets_assembled_body(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    resp = await EXECUTOR.open(_call(info, stream=False))
    assert resp.body is not None and resp.body["output"][0]["content"][0]["text"] == "echo: say hi"
    await resp.aclose()
    assert codex_fake.app.ws_log and not _http(codex_fake)


async def test_ws_serves_a_model_http_refuses(codex_fake: Any) -> None:
    codex_fake.app.http_unsupported_models = ("gpt-5.5",)
    info = await _account(codex_fake)
    events = await _collect(await EXECUTOR.open(_call(info)))
    assert events[-1]["type"] == "response.completed"


async def test_refused_handshake_falls_back_and_is_remembered(codex_fake: Any) -> None:
    codex_fake.app.ws_refuse = 426
    info = await _account(codex_fake, label="codex-ws-refused")
    events = await _collect(await EXECUTOR.open(_call(info)))
    assert events[-1]["type"] == "response.completed"  # same request, over HTTP SSE
    assert [c["refused"] for c in codex_fake.app.ws_log] == [426]
    assert len(_http(codex_fake)) == 1
    # the next request goes straight to HTTP, even though the fake would now accept
    codex_fake.app.ws_refuse = None
    events = await _collect(await EXECUTOR.open(_call(info)))
    assert events[-1]["type"] == "response.completed"
    assert len(codex_fake.app.ws_log) == 1 and len(_http(codex_fake)) == 2
    # another model on the same account is not pinned
    await _collect(await EXECUTOR.open(_call(info, model="gpt-5.4")))
    assert len(codex_fake.app.ws_log) == 2 and codex_fake.app.ws_log[-1]["refused"] is None


async def test_model_without_prefer_websockets_uses_http(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    events = await _collect(await EXECUTOR.open(_call(info, facts=ModelFacts())))
    assert events[-1]["type"] == "response.completed"
    assert not codex_fake.app.ws_log and len(_http(codex_fake)) == 1


async def test_account_can_turn_websockets_off(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    info = dataclasses.replace(info, provider_config={"websockets": False})
    events = await _collect(await EXECUTOR.open(_call(info)))
    assert events[-1]["type"] == "response.completed"
    assert not codex_fake.app.ws_log and len(_http(codex_fake)) == 1


async def test_ws_error_frame_is_classified(codex_fake: Any) -> None:
    codex_fake.app.exhaust("premium")
    info = await _account(codex_fake)
    with pytest.raises(UpstreamError) as exc:
        await EXECUTOR.open(_call(info))
    assert exc.value.status == 429 and exc.value.code == "usage_limit_reached" and exc.value.cooldown
    assert codex_fake.app.ws_log[0]["refused"] is None and not _http(codex_fake)


def test_connection_limit_error_frame_is_retryable_elsewhere() -> None:
    from executors.codex.errors import stream_error

    frame = {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "websocket_connection_limit_reached",
            "message": "Responses websocket connection limit reached (60 minutes).",
        },
    }
    err = stream_error(frame, {})
    assert err.code == "websocket_connection_limit_reached" and err.retryable and err.client_status == 502
