"""Account pools that never strand a developer: failover, cooldown windows and families,
responses-only routing, session affinity, state shared by several server processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from django.conf import settings

from accounts.services import client_key_create
from executors.openai_compat.services import account_add_openai_compat
from infra.db import db_call
from tests.fakes.base import FakeServer, Fault
from tests.fakes.openai_compat import ModelSpec, OpenAICompatApp
from tests.support.live import ProxyProcess
from tests.support.proxy import usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MODELS = ("gpt-4o-mini", "gpt-4.1", "gpt-5.5", "gpt-5.5-2026-04-23")


def _fake() -> OpenAICompatApp:
    return OpenAICompatApp(
        keys=("sk-upstream-A", "sk-upstream-B"),
        models=(
            "gpt-4o-mini",
            "gpt-4.1",
            ModelSpec("gpt-5.5", responses_only=True),
            ModelSpec("gpt-5.5-2026-04-23", responses_only=True),
        ),
        chunks=4,
    )


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeServer[OpenAICompatApp], FakeServer[OpenAICompatApp]]]:
    a, b = FakeServer(_fake()).start(), FakeServer(_fake()).start()
    yield a, b
    a.stop()
    b.stop()


class Pool:
    def __init__(self, url: str, key: str, a: Any, b: Any) -> None:
        self.url, self.key, self.a, self.b = url, key, a, b

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    async def chat(self, client: httpx.AsyncClient, text: str = "hi", **extra: Any) -> httpx.Response:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
        return await client.post(self.url + "/v1/chat/completions", json=body, headers=self.headers())


def _pool(live_proxy: Any, fakes: Any, *, same_priority: bool) -> Pool:
    a, b = fakes
    a.reset()
    b.reset()
    account_add_openai_compat(
        label="acct-A", base_url=a.url + "/v1", api_key="sk-upstream-A", model_names=MODELS, priority=10
    )
    account_add_openai_compat(
        label="acct-B",
        base_url=b.url + "/v1",
        api_key="sk-upstream-B",
        model_names=MODELS,
        priority=10 if same_priority else 5,
    )
    _, raw = client_key_create(name="dev")
    return Pool(live_proxy.url, raw, a, b)


@pytest.fixture
def pool(live_proxy: Any, fakes: Any) -> Pool:
    return _pool(live_proxy, fakes, same_priority=False)


@pytest.fixture
def flat_pool(live_proxy: Any, fakes: Any) -> Pool:
    return _pool(live_proxy, fakes, same_priority=True)


async def test_429_fails_over_invisibly_and_account_returns_after_window(pool: Pool) -> None:
    pool.a.faults.push(Fault.http(429, headers={"retry-after": "1"}))
    async with httpx.AsyncClient(timeout=10) as client:
        first = await pool.chat(client, "one", stream=True)
        second = await pool.chat(client, "two")
        await asyncio.sleep(1.2)
        third = await pool.chat(client, "three")
    assert first.status_code == 200 and first.text.rstrip().endswith("data: [DONE]")
    assert second.status_code == third.status_code == 200
    assert len(pool.a.requests) == 2, "A: the 429, then (after its window) the third request"
    assert len(pool.b.requests) == 2, "B: served the first two"
    rows = await usage_rows(3)
    assert [r.account_label for r in rows] == ["acct-B", "acct-B", "acct-A"]
    assert [(a["account"], a["status"]) for a in rows[0].attempt_log] == [("acct-A", 429), ("acct-B", 200)]
    assert rows[0].attempts == 2 and rows[0].outcome == "ok"


async def test_limit_on_one_family_leaves_other_families_usable(pool: Pool) -> None:
    pool.a.faults.push(Fault.http(429, headers={"retry-after": "30"}).where(model="gpt-4o-mini"))
    async with httpx.AsyncClient(timeout=10) as client:
        limited = await pool.chat(client, "x")
        other = await pool.chat(client, "y", model="gpt-4.1")
        again = await pool.chat(client, "z")
    assert limited.status_code == other.status_code == again.status_code == 200
    a_models = [r["json"]["model"] for r in pool.a.requests]
    b_models = [r["json"]["model"] for r in pool.b.requests]
    assert a_models == ["gpt-4o-mini", "gpt-4.1"], "A still serves the other family"
    assert b_models == ["gpt-4o-mini", "gpt-4o-mini"]


async def test_escalating_backoff_without_retry_after(pool: Pool) -> None:
    from state.cooldown import cooldowns_list
    from statestore import get_store

    pool.a.faults.push(Fault.http(429))  # no hint at all
    async with httpx.AsyncClient(timeout=10) as client:
        r = await pool.chat(client)
    assert r.status_code == 200
    accounts = {a.label: a for a in await db_call(pool_accounts)}
    views = await cooldowns_list(get_store(), account_id=accounts["acct-A"].id)
    assert [v.scope for v in views] == ["family:gpt-4o-mini"]
    assert 0 < views[0].remaining <= settings.COOLDOWN_BACKOFF_BASE_SECONDS


def pool_accounts() -> list[Any]:
    from accounts.models import UpstreamAccount

    return list(UpstreamAccount.objects.all())


async def test_all_accounts_cooling_is_429_naming_the_model(pool: Pool) -> None:
    pool.a.faults.push(Fault.http(429, headers={"retry-after": "20"}))
    pool.b.faults.push(Fault.http(429, headers={"retry-after": "40"}))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await pool.chat(client)
        again = await pool.chat(client)
    assert r.status_code == 429 and 19 <= int(r.headers["retry-after"]) <= 20
    assert again.status_code == 429 and "gpt-4o-mini" in again.json()["error"]["message"]
    assert len(pool.a.requests) == len(pool.b.requests) == 1


async def test_upstream_auth_failure_marks_account_and_fails_over(pool: Pool) -> None:
    from asgiref.sync import sync_to_async

    from accounts.models import UpstreamAccount

    pool.a.faults.push(Fault.http(401))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await pool.chat(client)
        r2 = await pool.chat(client)
    assert r.status_code == r2.status_code == 200
    a = await sync_to_async(UpstreamAccount.objects.get)(label="acct-A")
    assert a.state == "auth_failed" and a.last_error
    assert len(pool.a.requests) == 1, "a revoked credential is not tried again until an admin acts"


async def test_client_fault_4xx_never_cools(pool: Pool) -> None:
    pool.a.faults.push(Fault.http(400))
    async with httpx.AsyncClient(timeout=10) as client:
        bad = await pool.chat(client)
        good = await pool.chat(client)
    assert bad.status_code == 400
    assert good.status_code == 200
    assert len(pool.a.requests) == 2 and pool.b.requests == []


async def test_error_as_first_stream_event_fails_over(pool: Pool) -> None:
    pool.a.faults.push(Fault.stream_error())
    async with httpx.AsyncClient(timeout=10) as client:
        r = await pool.chat(client, stream=True)
    assert r.status_code == 200
    assert '"error"' not in r.text and r.text.rstrip().endswith("data: [DONE]")
    assert len(pool.b.requests) == 1


@pytest.mark.parametrize("model", ["gpt-5.5", "gpt-5.5-2026-04-23"])
async def test_responses_only_family_from_a_chat_client(pool: Pool, model: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        whole = await pool.chat(client, "reply please", model=model)
        streamed = await pool.chat(client, "stream please", model=model, stream=True)
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/json"
    assert whole.json()["object"] == "chat.completion"
    assert "reply please" in whole.json()["choices"][0]["message"]["content"]
    chunks = [orjson.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "stream please" in text and streamed.text.rstrip().endswith("data: [DONE]")
    paths = {(r["path"], r["headers"].get("accept")) for r in pool.a.requests}
    assert paths == {("/v1/responses", "text/event-stream")}, "never /chat/completions for this family"


async def test_session_affinity_holds_a_conversation_while_other_traffic_rotates(flat_pool: Pool) -> None:
    conversation: list[dict[str, str]] = [{"role": "system", "content": "you are terse"}]
    served: list[str] = []
    others: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for turn in range(10):
            conversation.append({"role": "user", "content": f"turn {turn}"})
            body = {"model": "gpt-4o-mini", "messages": conversation}
            r = await client.post(flat_pool.url + "/v1/chat/completions", json=body, headers=flat_pool.headers())
            assert r.status_code == 200
            conversation.append({"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]})
            other = await flat_pool.chat(client, f"unrelated question {turn}")
            assert other.status_code == 200
    rows = await usage_rows(20)
    for i, row in enumerate(rows):
        (served if i % 2 == 0 else others).append(row.account_label)
    assert len(set(served)) == 1, f"conversation moved: {served}"
    assert set(others) == {"acct-A", "acct-B"}, f"other traffic did not rotate: {others}"


async def test_explicit_session_header_binds_too(flat_pool: Pool) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(6):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"different {i}"}]}
            r = await client.post(
                flat_pool.url + "/v1/chat/completions",
                json=body,
                headers={**flat_pool.headers(), "x-claude-code-session-id": "sess-1"},
            )
            assert r.status_code == 200
    rows = await usage_rows(6)
    assert len({r.account_label for r in rows}) == 1


@pytest.mark.skipif(not settings.REDIS_URL, reason="several server processes share state only through Redis")
async def test_two_server_processes_share_cooldowns_under_200_concurrent_requests(pool: Pool, live_proxy: Any) -> None:
    # given a second, separate proxy process on the same database and Redis
    with ProxyProcess() as process:
        second = process.url
        async with httpx.AsyncClient(timeout=20) as client:
            # when A answers 429 once through the first process
            pool.a.faults.push(Fault.http(429, headers={"retry-after": "60"}).where(times=1000))
            assert (await pool.chat(client)).status_code == 200
            assert len(pool.a.requests) == 1
            # then 200 concurrent requests spread over both processes never touch A

            async def one(i: int) -> int:
                base = pool.url if i % 2 else second
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
                r = await client.post(base + "/v1/chat/completions", json=body, headers=pool.headers())
                return r.status_code

            statuses = await asyncio.gather(*(one(i) for i in range(200)))
    assert Counter(statuses) == {200: 200}
    assert len(pool.a.requests) == 1, "the cooldown set by one process is honoured by the other"
    assert len(pool.b.requests) == 201


@pytest.mark.parametrize("stream", [True, False])
async def test_responses_failed_after_created_fails_over(pool: Pool, stream: bool) -> None:
    """The Responses upstream path: `response.failed` right after `response.created` is still
    the handshake (nothing reached the client), so it fails over like the GitLab and Codex paths."""
    failed = {"event": "response.failed", "code": "server_error", "message": "The model failed."}
    pool.a.faults.push(Fault.stream_error(failed, after=1))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await pool.chat(client, "after a failure", model="gpt-5.5", stream=stream)
    assert r.status_code == 200, r.text
    if stream:
        chunks = [orjson.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert not any("error" in c for c in chunks)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    else:
        text = r.json()["choices"][0]["message"]["content"]
    assert text == "echo: after a failure"
    assert len(pool.a.requests) == 1 and len(pool.b.requests) == 1
    rows = await usage_rows(1)
    assert rows[-1].outcome == "ok" and [a.get("status") for a in rows[-1].attempt_log] == [502, 200]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/responses", {"input": "hi", "conversation": "conv_from_another_account"}, "conversation"),
        ("/v1/responses", {"input": "hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ("/v1/responses", {"input": "hi", "base_url": "https://example.invalid"}, "base_url"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "base_url": "x"}, "base_url"),
    ],
)
async def test_fields_the_proxy_cannot_honour_never_reach_an_upstream(
    pool: Pool, path: str, body: dict[str, Any], param: str
) -> None:
    """Issue 17 F4: a field forwarded blindly could make an account answer 404 for its own
    reasons (a conversation it does not hold) and cool the model down for every key. Such
    fields are refused before dispatch, in the client's dialect; the model stays available."""
    async with httpx.AsyncClient(timeout=10) as client:
        url = pool.url + path
        refused = await client.post(url, json={"model": "gpt-5.5", **body}, headers=pool.headers())
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.text
        assert pool.a.requests == [] and pool.b.requests == []
        ok = await pool.chat(client, "still here", model="gpt-5.5")
    assert ok.status_code == 200 and len(pool.a.requests) + len(pool.b.requests) == 1


async def test_an_upstream_cookie_never_travels_to_another_account(pool: Pool) -> None:
    # A bot-protection cookie set on one account's answer (Cloudflare sets `__cf_bm` on 429s)
    # must not be replayed on another account's request: cookies are per host, not per port or
    # per account, so a shared client jar would link the team's accounts upstream.
    cookie = "__cf_bm=account-a-session; Path=/; HttpOnly"
    pool.a.faults.push(Fault.http(429, headers={"retry-after": "1", "set-cookie": cookie}))
    async with httpx.AsyncClient(timeout=10) as client:
        first = await pool.chat(client, "one")
        await asyncio.sleep(1.2)
        second = await pool.chat(client, "two")
    assert first.status_code == second.status_code == 200
    assert len(pool.a.requests) == 2 and len(pool.b.requests) == 1
    sent = [r["headers"] for r in (*pool.a.requests, *pool.b.requests)]
    assert all("cookie" not in h for h in sent), [h.get("cookie") for h in sent]
