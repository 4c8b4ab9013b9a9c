"""End to end through the real proxy server and a realistic fake upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


def _chat(stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
    if stream:
        body["stream"] = True
    body.update(extra)
    return body


def _data_events(raw: bytes) -> list[bytes]:
    return [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]


async def test_stream_reaches_client_as_upstream_produces_it(proxy: ProxySetup) -> None:
    # given an upstream paced at 20 chunks x 50 ms (~1 s of pacing)
    proxy.fake.app.chunks, proxy.fake.app.interval = 20, 0.05
    arrivals: list[tuple[float, bytes]] = []
    # when the client streams through the proxy
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", proxy.v1 + "/chat/completions", json=_chat(stream=True), headers=proxy.headers()) as resp,
    ):
        opened = time.perf_counter()  # response headers arrived: the upstream stream began
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                arrivals.append((time.perf_counter() - opened, line[6:].encode()))
    total = arrivals[-1][0]
    content_times = [t for t, d in arrivals if b'"content":"' in d and b'"content":""' not in d]
    first_content = content_times[0]
    # then the first content chunk arrives well before the upstream finished (< 1/3 of it)
    assert total >= 0.9, f"upstream pacing not applied (total {total:.3f}s)"
    assert first_content < total / 3, f"first content at {first_content:.3f}s of {total:.3f}s: buffered"
    # and chunks kept arriving spread over the stream, not in one burst at the end
    assert content_times[len(content_times) // 2] - first_content > 0.3
    assert arrivals[-1][1] == b"[DONE]"


async def test_stream_usage_recorded_and_hidden_unless_requested(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(stream=True), headers=proxy.headers())
    events = _data_events(r.content)
    chunks = [orjson.loads(e) for e in events if e != b"[DONE]"]
    # the client did not ask for usage: no choices-less usage chunk reaches it
    assert all(c["choices"] for c in chunks)
    # but the proxy asked the upstream for it and recorded it
    sent = proxy.fake.requests[-1]["json"]
    assert sent["stream_options"] == {"include_usage": True}
    rows = await usage_rows(1)
    assert len(rows) == 1
    row = rows[0]
    assert row.outcome == "ok" and row.stream and row.status_code == 200
    assert row.input_tokens > 0 and row.output_tokens > 0
    assert row.account_label == "acct-A" and row.requested_model == "gpt-4o-mini"
    assert row.ttfb_ms is not None and row.duration_ms >= row.ttfb_ms


async def test_stream_usage_passed_when_requested_even_on_final_choice_chunk(proxy: ProxySetup) -> None:
    proxy.fake.app.usage_on_final_choice_chunk = True
    proxy.fake.app.cached_tokens = 2
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            proxy.v1 + "/chat/completions",
            json=_chat(stream=True, stream_options={"include_usage": True}),
            headers=proxy.headers(),
        )
    chunks = [orjson.loads(e) for e in _data_events(r.content) if e != b"[DONE]"]
    with_usage = [c for c in chunks if c.get("usage")]
    assert with_usage, "usage chunk must reach a client that asked for it"
    usage = with_usage[-1]["usage"]
    rows = await usage_rows(1)
    assert rows[0].input_tokens == usage["prompt_tokens"]
    assert rows[0].output_tokens == usage["completion_tokens"]
    assert rows[0].cached_tokens == 2


async def test_non_stream_roundtrip_records_usage(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert "hello there" in body["choices"][0]["message"]["content"]
    rows = await usage_rows(1)
    assert rows[0].outcome == "ok" and not rows[0].stream
    assert rows[0].input_tokens == body["usage"]["prompt_tokens"]
    assert rows[0].output_tokens == body["usage"]["completion_tokens"]


async def test_x_api_key_header_is_accepted(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers={"x-api-key": proxy.key})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer sk-team-nope"}, {"authorization": "Basic abc"}, {"x-api-key": "x" * 500}],
)
async def test_bad_key_is_401_openai_error_and_recorded(proxy: ProxySetup, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=headers)
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    assert proxy.fake.requests == []
    rows = await usage_rows(1)
    assert len(rows) == 1 and rows[0].outcome == "rejected" and rows[0].status_code == 401
    assert rows[0].client_key_id is None


async def test_disabled_and_expired_keys_are_rejected(proxy: ProxySetup) -> None:
    from asgiref.sync import sync_to_async
    from django.utils import timezone

    from accounts.models import ClientKey
    from accounts.services import client_key_create, client_key_set_enabled

    key = await ClientKey.objects.aget(name="dev")
    await sync_to_async(client_key_set_enabled)(key=key, enabled=False)
    _, expired_raw = await sync_to_async(client_key_create)(name="old", expires_at=timezone.now())
    async with httpx.AsyncClient(timeout=10) as client:
        r1 = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
        r2 = await client.post(
            proxy.v1 + "/chat/completions", json=_chat(), headers={"authorization": f"Bearer {expired_raw}"}
        )
    assert (r1.status_code, r2.status_code) == (401, 401)
    assert proxy.fake.requests == []


BAD_BODIES: list[tuple[str, bytes, int, str | None]] = [
    ("invalid json", b"{not json", 400, None),
    ("array body", b"[1, 2]", 400, None),
    ("string body", b'"hi"', 400, None),
    ("missing model", orjson.dumps({"messages": [{"role": "user", "content": "x"}]}), 400, "model"),
    ("model wrong type", orjson.dumps({"model": 5, "messages": [{"role": "user", "content": "x"}]}), 400, "model"),
    ("missing messages", orjson.dumps({"model": "gpt-4o-mini"}), 400, "messages"),
    ("messages not list", orjson.dumps({"model": "gpt-4o-mini", "messages": "hi"}), 400, "messages"),
    ("bad role", orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}), 400, None),
    ("stream wrong type", orjson.dumps(_chat(stream=False) | {"stream": "yes"}), 400, "stream"),
    ("unknown model", orjson.dumps(_chat() | {"model": "no-such-model"}), 404, "model"),
]


@pytest.mark.parametrize(("name", "raw", "status", "param"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_input_is_4xx_without_upstream_call(
    proxy: ProxySetup, name: str, raw: bytes, status: int, param: str | None
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            proxy.v1 + "/chat/completions",
            content=raw,
            headers=proxy.headers(**{"content-type": "application/json"}),
        )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    if param is not None:
        assert err["param"] is not None and param in err["param"]
    assert proxy.fake.requests == [], "no upstream call for an invalid request"
    rows = await usage_rows(1)
    assert rows[0].outcome == "rejected" and rows[0].status_code == status


async def test_body_over_limit_is_413(proxy: ProxySetup, settings: Any) -> None:
    from django.conf import settings as live_settings

    old = live_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    live_settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    try:
        body = _chat(messages=[{"role": "user", "content": "x" * 20_000}])
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(proxy.v1 + "/chat/completions", json=body, headers=proxy.headers())
    finally:
        live_settings.DATA_UPLOAD_MAX_MEMORY_SIZE = old
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert proxy.fake.requests == []


async def test_key_model_allow_list(live_proxy: Any, fake_openai: Any) -> None:
    from asgiref.sync import sync_to_async

    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai, allowed_models=("gpt-4.1",))
    async with httpx.AsyncClient(timeout=10) as client:
        denied = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
        allowed = await client.post(
            proxy.v1 + "/chat/completions", json=_chat(model="gpt-4.1"), headers=proxy.headers()
        )
        listed = await client.get(proxy.v1 + "/models", headers=proxy.headers())
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert allowed.status_code == 200
    assert [m["id"] for m in listed.json()["data"]] == ["gpt-4.1"]


async def test_models_list_shapes(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        openai_shape = (await client.get(proxy.v1 + "/models", headers=proxy.headers())).json()
        anthropic_shape = (
            await client.get(proxy.v1 + "/models", headers=proxy.headers(**{"anthropic-version": "2023-06-01"}))
        ).json()
        unauth = await client.get(proxy.v1 + "/models")
    assert openai_shape["object"] == "list"
    assert {m["id"] for m in openai_shape["data"]} == {"gpt-4o-mini", "gpt-4.1"}
    assert all(m["object"] == "model" for m in openai_shape["data"])
    assert {m["id"] for m in anthropic_shape["data"]} == {"gpt-4o-mini", "gpt-4.1"}
    assert anthropic_shape["has_more"] is False
    assert unauth.status_code == 401


async def test_upstream_5xx_is_an_error_and_recorded(proxy: ProxySetup) -> None:
    proxy.fake.faults.push(Fault.http(500))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "server_error"
    rows = await usage_rows(1)
    assert rows[0].outcome == "upstream_error" and rows[0].status_code == 502
    assert rows[0].account_label == "acct-A"


async def test_upstream_cut_mid_stream_ends_with_error_event(proxy: ProxySetup) -> None:
    proxy.fake.faults.push(Fault.cut(after=5))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(stream=True), headers=proxy.headers())
    events = _data_events(r.content)
    assert b"[DONE]" not in events, "a cut stream must not look complete"
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "upstream_stream_cut"
    rows = await usage_rows(1)
    assert rows[0].outcome == "upstream_error" and rows[0].error_code == "upstream_stream_cut"


async def test_malformed_upstream_event_ends_with_error_event(proxy: ProxySetup) -> None:
    proxy.fake.faults.push(Fault.malformed(after=3))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(stream=True), headers=proxy.headers())
    last = orjson.loads(_data_events(r.content)[-1])
    assert last["error"]["code"] == "upstream_malformed_stream"
    rows = await usage_rows(1)
    assert rows[0].outcome == "upstream_error"


async def test_client_disconnect_cancels_upstream_and_is_recorded(proxy: ProxySetup) -> None:
    proxy.fake.app.chunks, proxy.fake.app.interval = 200, 0.05  # a 10 s stream
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream(
            "POST", proxy.v1 + "/chat/completions", json=_chat(stream=True), headers=proxy.headers()
        ) as resp:
            got = 0
            async for _ in resp.aiter_raw():
                got += 1
                if got >= 3:
                    break
        closed_at = time.monotonic()
    # then the upstream stream is cancelled promptly
    assert await asyncio.to_thread(proxy.fake.control.wait_for, lambda c: len(c.cancellations) >= 1, 3.0)
    assert time.monotonic() - closed_at < 3.0
    rows = await usage_rows(1)
    assert len(rows) == 1 and rows[0].outcome == "client_disconnect"
    assert rows[0].duration_ms < 5000


async def test_failover_on_429_is_invisible_and_cools_the_account(live_proxy: Any, fake_openai: Any) -> None:
    from asgiref.sync import sync_to_async

    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai, accounts=2)
    fake_openai.faults.push(Fault.http(429, headers={"retry-after": "30"}))
    async with httpx.AsyncClient(timeout=10) as client:
        first = await client.post(proxy.v1 + "/chat/completions", json=_chat(stream=True), headers=proxy.headers())
        second = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
    assert first.status_code == 200 and _data_events(first.content)[-1] == b"[DONE]"
    assert second.status_code == 200
    keys_used = [r["headers"].get("authorization") for r in fake_openai.requests]
    # A answered 429, B served; the next request skips the cooling A.
    assert keys_used == ["Bearer sk-upstream-A", "Bearer sk-upstream-B", "Bearer sk-upstream-B"]
    rows = await usage_rows(2)
    assert [r.account_label for r in rows] == ["acct-B", "acct-B"]
    assert rows[0].attempts == 2 and rows[1].attempts == 1


async def test_all_accounts_limited_is_429_with_retry_after(proxy: ProxySetup) -> None:
    proxy.fake.faults.push(Fault.http(429, headers={"retry-after": "17"}))
    async with httpx.AsyncClient(timeout=10) as client:
        r1 = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
        r2 = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
    assert r1.status_code == 429 and int(r1.headers["retry-after"]) == 17
    assert r2.status_code == 429 and 15 <= int(r2.headers["retry-after"]) <= 17
    assert "gpt-4o-mini" in r2.json()["error"]["message"]
    assert len(proxy.fake.requests) == 1, "a cooling account is not called again"
