"""GitLab executor against the fake instance + AI gateway: transports, streaming, errors, minting."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from accounts.models import UpstreamAccount
from accounts.selectors import AccountInfo, accounts_enabled
from executors.base import CooldownScope, UpstreamCall, UpstreamError, UpstreamResponse
from executors.gitlab.catalog import gitlab_upstream_model
from executors.gitlab.executor import EXECUTOR
from executors.gitlab.grants import gitlab_grant_cache_clear
from executors.gitlab.models import GatewayToken
from executors.gitlab.services import gitlab_pat_add
from executors.registry import executor_for
from formats import Dialect, UnsupportedFeature
from infra.db import db_call
from statestore import get_store
from tests.executors.gitlab.conftest import PAT
from tests.fakes.base import Fault
from tests.fakes.gitlab import GitLabFakes

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MESSAGES_PATH = "/ai/v1/proxy/anthropic/v1/messages"
CHAT_PATH = "/ai/v1/proxy/openai/v1/chat/completions"
RESPONSES_PATH = "/ai/v1/proxy/openai/v1/responses"


def _add(gitlab: GitLabFakes, **config: Any) -> UpstreamAccount:
    account = gitlab_pat_add(label="duo", token=PAT, instance_url=gitlab.instance_url, gateway_url=gitlab.gateway_url)
    if config:
        from executors.gitlab.catalog import gitlab_model_names

        account.provider_config = {**account.provider_config, **config}
        account.model_names = gitlab_model_names(account.provider_config)
        account.save()
    return account


@pytest.fixture
async def account(gitlab: GitLabFakes) -> AccountInfo:
    await db_call(_add, gitlab)
    (info,) = await accounts_enabled()
    return info


def _call(account: AccountInfo, dialect: Dialect, model: str, *, stream: bool = True, **extra: Any) -> UpstreamCall:
    text = extra.pop("text", "hello gateway")
    if dialect is Dialect.MESSAGES:
        body: dict[str, Any] = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    elif dialect is Dialect.CHAT:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
    else:
        body = {"model": model, "input": text}
    if stream:
        body["stream"] = True
    body.update(extra)
    return UpstreamCall(
        account=account,
        dialect=dialect,
        body=body,
        stream=stream,
        upstream_model=model,
        client_headers={"anthropic-version": "2023-06-01"},
    )


async def _drain(resp: UpstreamResponse) -> list[tuple[float, Any]]:
    out = []
    assert resp.events is not None
    try:
        async for ev in resp.events:
            out.append((time.perf_counter(), ev))
    finally:
        await resp.aclose()
    return out


def test_registered() -> None:
    assert executor_for("gitlab") is EXECUTOR
    assert gitlab_upstream_model("gitlab-duo") == "claude-sonnet-4-6"
    assert gitlab_upstream_model("gitlab-duo", {"aliases": {"gitlab-duo": "gitlab-duo-gpt"}}) == "gpt-5.1"
    assert gitlab_upstream_model("claude-opus-4-7") == "claude-opus-4-7"


async def test_messages_stream_passes_through_as_it_arrives(gitlab: GitLabFakes, account: AccountInfo) -> None:
    # given a paced gateway stream: 10 text chunks x 100 ms
    gitlab.gateway.app.chunks, gitlab.gateway.app.interval = 10, 0.1
    started = time.perf_counter()
    # when a Messages client streams the stable alias
    resp = await EXECUTOR.open(_call(account, Dialect.MESSAGES, "gitlab-duo"))
    opened = time.perf_counter()
    events = await _drain(resp)
    finished = time.perf_counter()
    # then the answer is native Anthropic SSE (event lines kept), handed back before it finished
    assert resp.dialect is Dialect.MESSAGES
    names = [ev.event for _, ev in events]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "content_block_delta" in names
    first_delta = next(t for t, ev in events if ev.event == "content_block_delta")
    assert finished - started >= 1.0
    # (relative bounds: the first open also mints the gateway token, slower on a loaded machine)
    assert opened - started < (finished - started) / 2 and first_delta - opened < (finished - opened) / 3
    # and the gateway got the mapped model, the grant's headers verbatim and the minted bearer
    req = gitlab.gateway.requests[-1]
    assert req["path"] == MESSAGES_PATH and req["json"]["model"] == "claude-sonnet-4-6"
    headers = req["headers"]
    assert headers["authorization"].startswith("Bearer ey") and "must-not-be-forwarded" not in str(headers)
    assert headers["x-gitlab-authentication-type"] == "oidc"
    assert headers["x-gitlab-unit-primitive"] == "ai_gateway_model_provider_proxy"
    assert headers["x-gitlab-realm"] == "saas" and headers["x-gitlab-root-namespace-id"] == "123"
    assert headers["anthropic-version"] == "2023-06-01"


async def test_chat_client_on_gpt_uses_the_chat_proxy_path(gitlab: GitLabFakes, account: AccountInfo) -> None:
    resp = await EXECUTOR.open(_call(account, Dialect.CHAT, "gitlab-duo-gpt"))
    events = await _drain(resp)
    assert resp.dialect is Dialect.CHAT and events[-1][1].data == b"[DONE]"
    req = gitlab.gateway.requests[-1]
    assert req["path"] == CHAT_PATH and req["json"]["model"] == "gpt-5.1"
    assert req["json"]["stream_options"] == {"include_usage": True}


async def test_messages_client_on_gpt_is_translated_to_responses(gitlab: GitLabFakes, account: AccountInfo) -> None:
    resp = await EXECUTOR.open(_call(account, Dialect.MESSAGES, "gpt-5.1"))
    events = await _drain(resp)
    assert resp.dialect is Dialect.RESPONSES
    assert orjson.loads(events[-1][1].data)["type"] == "response.completed"
    req = gitlab.gateway.requests[-1]
    assert req["path"] == RESPONSES_PATH and "input" in req["json"] and "messages" not in req["json"]


async def test_chat_client_on_claude_non_stream(gitlab: GitLabFakes, account: AccountInfo) -> None:
    resp = await EXECUTOR.open(_call(account, Dialect.CHAT, "claude-haiku-4-5-20251001", stream=False))
    assert resp.dialect is Dialect.MESSAGES and resp.body is not None
    assert resp.body["content"][0]["text"] == "echo: hello gateway"
    assert gitlab.gateway.requests[-1]["json"]["max_tokens"] > 0


async def test_responses_only_model_switches_path_once(gitlab: GitLabFakes, account: AccountInfo) -> None:
    resp = await EXECUTOR.open(_call(account, Dialect.CHAT, "gpt-5.6-sol", stream=False))
    assert resp.dialect is Dialect.RESPONSES and resp.body is not None and resp.body["object"] == "response"
    assert [r["path"] for r in gitlab.gateway.requests] == [CHAT_PATH, RESPONSES_PATH]


async def test_fifty_concurrent_requests_with_an_expiring_token_mint_once(
    gitlab: GitLabFakes, account: AccountInfo
) -> None:
    # given the cached token is 2 minutes from expiry (inside the 5-minute margin), nowhere warm
    await db_call(
        GatewayToken.objects.filter(account_id=account.id).update,
        expires_at=datetime.now(tz=UTC) + timedelta(minutes=2),
    )
    await get_store().delete(f"gitlab:grant:{account.id}")
    gitlab_grant_cache_clear()
    mints = gitlab.world.count("mints")
    # when 50 requests arrive together
    results = await asyncio.gather(
        *(EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6", stream=False)) for _ in range(50))
    )
    # then all succeed and GitLab minted exactly one new token
    assert all(r.body is not None for r in results)
    assert gitlab.world.count("mints") == mints + 1
    tokens = {r["headers"]["authorization"] for r in gitlab.gateway.requests}
    assert len(tokens) == 1


async def test_gateway_401_asks_dispatch_for_one_remint(gitlab: GitLabFakes, account: AccountInfo) -> None:
    mints = gitlab.world.count("mints")
    gitlab.gateway.faults.push(Fault.http(401).where(path=MESSAGES_PATH))
    # the executor does not retry: one request, a failure that asks for a credential refresh
    with pytest.raises(UpstreamError) as err:
        await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
    assert err.value.refresh_credential and err.value.code == "gitlab_gateway_auth_failed"
    assert len(gitlab.gateway.requests) == 1 and gitlab.world.count("mints") == mints
    # dispatch's one refresh re-mints; the retry uses the new token
    assert await EXECUTOR.refresh_credential(account) is True
    await _drain(await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6")))
    assert gitlab.world.count("mints") == mints + 1
    first, second = gitlab.gateway.requests
    assert first["headers"]["authorization"] != second["headers"]["authorization"]


async def test_gateway_401_after_the_remint_is_an_account_problem(gitlab: GitLabFakes, account: AccountInfo) -> None:
    gitlab.gateway.faults.push(Fault.http(401).where(path=MESSAGES_PATH))
    with pytest.raises(UpstreamError) as err:
        await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
    # what dispatch applies when the re-minted token is refused too: rest the whole account
    assert err.value.retryable and err.value.cooldown_scope is CooldownScope.ACCOUNT and err.value.cooldown
    assert "Forbidden by auth provider" in err.value.message


@pytest.mark.parametrize(
    ("status", "state", "scope", "retryable", "text"),
    [
        (402, "quota_exhausted", CooldownScope.ACCOUNT, True, "sufficient credits"),
        (403, "not_entitled", CooldownScope.ACCOUNT, True, "not entitled"),
        (400, None, CooldownScope.MODEL, False, "Unsupported model"),
        (502, None, CooldownScope.ACCOUNT, True, "Bad Gateway"),
        (529, None, CooldownScope.FAMILY, True, "Overloaded"),
    ],
)
async def test_gateway_errors_are_classified(
    gitlab: GitLabFakes,
    account: AccountInfo,
    status: int,
    state: str | None,
    scope: CooldownScope,
    retryable: bool,
    text: str,
) -> None:
    gitlab.gateway.faults.push(Fault.http(status).where(path=MESSAGES_PATH))
    with pytest.raises(UpstreamError) as err:
        await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
    exc = err.value
    assert exc.account_state == state and exc.retryable is retryable and text in exc.message
    if exc.cooldown is not None:
        assert exc.cooldown_scope is scope


async def test_proxy_not_enabled_is_not_entitled(gitlab: GitLabFakes, account: AccountInfo) -> None:
    gitlab.world.proxy_enabled = False
    with pytest.raises(UpstreamError) as err:
        await EXECUTOR.open(_call(account, Dialect.CHAT, "gpt-5.1"))
    assert err.value.account_state == "not_entitled" and "not enabled for this namespace" in err.value.message


async def test_vendor_429_backs_off_exponentially(gitlab: GitLabFakes, account: AccountInfo) -> None:
    gitlab.gateway.faults.push(Fault.http(429).where(path=MESSAGES_PATH, times=2))
    cooldowns = []
    for _ in range(2):
        with pytest.raises(UpstreamError) as err:
            await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
        assert err.value.cooldown_scope is CooldownScope.FAMILY and err.value.client_status == 429
        cooldowns.append(err.value.cooldown)
    assert cooldowns == [15.0, 30.0]
    gitlab.gateway.faults.push(Fault.http(429, retry_after=7).where(path=MESSAGES_PATH))
    with pytest.raises(UpstreamError) as err:
        await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
    assert err.value.cooldown == 7.0


async def test_error_as_first_stream_event_fails_over(gitlab: GitLabFakes, account: AccountInfo) -> None:
    gitlab.gateway.faults.push(Fault.stream_error().where(path=MESSAGES_PATH))
    with pytest.raises(UpstreamError) as err:
        await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
    assert err.value.retryable and "Overloaded" in err.value.message


async def test_stream_outliving_its_token_is_not_interrupted(gitlab: GitLabFakes, account: AccountInfo) -> None:
    # given a fresh token that expires 1 s after minting, and a 1.5 s stream
    gitlab.world.ujwt_ttl = 1
    await get_store().delete(f"gitlab:grant:{account.id}")
    await db_call(GatewayToken.objects.all().delete)
    gitlab_grant_cache_clear()
    gitlab.gateway.app.chunks, gitlab.gateway.app.interval = 10, 0.12
    try:
        resp = await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
    except UpstreamError as exc:
        # on a slow machine the 1 s token can lapse before the request: dispatch's one re-mint
        assert exc.refresh_credential
        await EXECUTOR.refresh_credential(account)
        resp = await EXECUTOR.open(_call(account, Dialect.MESSAGES, "claude-sonnet-4-6"))
    events = await _drain(resp)
    assert events[-1][1].event == "message_stop"
    # the fake counts a stream once its last write returns, which can be just after we read it
    assert await asyncio.to_thread(gitlab.gateway.control.wait_for, lambda c: c.completed_streams == 1, 3.0)


async def test_code_suggestions_fallback_streams_incrementally(gitlab: GitLabFakes) -> None:
    await db_call(_add, gitlab, fallback_models=["gitlab-duo-code"], fallback={"mode": "code_suggestions"})
    (account,) = await accounts_enabled()
    assert "gitlab-duo-code" in account.model_names
    chunks, interval = 8, 0.1
    gitlab.instance.app.chunks, gitlab.instance.app.interval = chunks, interval
    resp = await EXECUTOR.open(_call(account, Dialect.CHAT, "gitlab-duo-code"))
    events = await _drain(resp)
    datas = [ev.data for _, ev in events]
    assert resp.dialect is Dialect.CHAT and datas[-1] == b"[DONE]" and "lossy" in resp.headers["x-gitlab-transport"]
    text = "".join((orjson.loads(d)["choices"] or [{}])[0].get("delta", {}).get("content") or "" for d in datas[:-1])
    assert text == "echo: hello gateway"
    # Measured against GitLab's own pacing (chunks `interval` apart), from the first content
    # event, so a slow setup (mint, database) does not count: a buffered reply would land all
    # at once at the end; a streamed one spreads over most of GitLab's sending time.
    content_times = [t for t, ev in events if b'"content":"' in ev.data]
    first, last = content_times[0], events[-1][0]
    assert last - first > 0.5 * (chunks - 1) * interval
    assert content_times[1] - first < (last - first) / 2  # arrived while GitLab was still sending
    req = gitlab.instance.requests[-1]
    assert req["path"] == "/api/v4/code_suggestions/completions"
    assert req["headers"]["x-supports-sse-streaming"] == "true" and req["json"]["intent"] == "generation"


async def test_fallback_refuses_tools_naming_the_field(gitlab: GitLabFakes) -> None:
    await db_call(_add, gitlab, fallback_models=["gitlab-duo-code"])
    (account,) = await accounts_enabled()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(UnsupportedFeature) as err:
        await EXECUTOR.open(_call(account, Dialect.CHAT, "gitlab-duo-code", tools=tools))
    assert err.value.field == "tools"
    assert not [r for r in gitlab.instance.requests if r["path"].endswith("completions")]


async def test_chat_rest_fallback_refuses_streams(gitlab: GitLabFakes) -> None:
    gitlab.world.rest_chat = True
    await db_call(_add, gitlab, fallback_models=["gitlab-duo-code"], fallback={"mode": "chat_rest"})
    (account,) = await accounts_enabled()
    with pytest.raises(UnsupportedFeature) as err:
        await EXECUTOR.open(_call(account, Dialect.CHAT, "gitlab-duo-code"))
    assert err.value.field == "stream"
    resp = await EXECUTOR.open(_call(account, Dialect.CHAT, "gitlab-duo-code", stream=False))
    assert resp.body is not None and resp.body["choices"][0]["message"]["content"] == "echo: hello gateway"


async def test_refresh_credential_remints(gitlab: GitLabFakes, account: AccountInfo) -> None:
    mints = gitlab.world.count("mints")
    assert await EXECUTOR.refresh_credential(account) is True
    assert gitlab.world.count("mints") == mints + 1
