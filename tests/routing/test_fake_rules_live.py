"""The proxy never trips a rule of docs/fake-rules.md: for each row, the client requests most
likely to trip it (the row's "tempting input") go through the real proxy on every upstream path
the rule applies to, on default account settings; every answer is the client's, and no fake logs
a violation. State rows set the state up and check the proxy's handling (the violation is the
state's, logged once, and the client still gets its answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from formats.compaction import proxy_blob
from tests.conformance.paths import (
    ANTHROPIC_API,
    ANTHROPIC_KEYS,
    CODEX,
    GITLAB_ANTHROPIC,
    GITLAB_OPENAI,
    OPENAI_COMPAT,
    OPENAI_KEYS,
    OPENAI_RESPONSES,
    RESPONSES_ONLY,
    Fakes,
    Upstream,
    setup_path,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SURFACES = {
    "chat": "/v1/chat/completions",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
    "compact": "/v1/responses/compact",
}
USER = [{"role": "user", "content": "hello rules"}]
ITEM = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello rules"}]}
DEV = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]}
FN_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
RESP_FN = {"type": "function", "name": "get_weather", "description": "weather", "parameters": FN_PARAMS}
CHAT_FN = {"type": "function", "function": {"name": "get_weather", "parameters": FN_PARAMS}}
MSG_FN = {"name": "get_weather", "input_schema": FN_PARAMS}


@dataclass(frozen=True)
class Req:
    surface: str
    body: dict[str, Any]
    status: int = 200  # 400 = the proxy refuses it itself (and the fake must not be called)

    def streamed(self) -> Req:
        return Req(self.surface, {**self.body, "stream": True}, self.status)


def both(surface: str, body: dict[str, Any]) -> list[Req]:
    """The request as a non-stream and as a stream call."""
    return [Req(surface, body), Req(surface, body).streamed()]


NO_SYSTEM = [
    *both("chat", {"messages": USER}),
    *both("responses", {"input": "hello rules"}),
    *both("responses", {"input": [ITEM], "instructions": ""}),
    *both("messages", {"max_tokens": 64, "messages": USER}),
]
WITH_SYSTEM = [
    *both("chat", {"messages": [{"role": "system", "content": "Be brief."}, *USER]}),
    *both("responses", {"input": [DEV, ITEM]}),
    *both("messages", {"max_tokens": 64, "system": "Be brief.", "messages": USER}),
]
SAMPLING = [
    Req("chat", {"messages": USER, "temperature": 0.3, "top_p": 0.9, "max_tokens": 50, "user": "dev-1", "seed": 7,
                 "presence_penalty": 0.1, "stream": True, "stream_options": {"include_usage": True}}),
    # Refused by the proxy, as api.openai.com would (not forwarded to trip the upstream).
    Req("chat", {"messages": USER, "max_completion_tokens": 50, "stream_options": {"include_usage": True}}, 400),
    Req("responses", {"input": "hello rules", "temperature": 0.3, "top_p": 0.9, "max_output_tokens": 50,
                      "user": "dev-1", "metadata": {"k": "v"}, "truncation": "auto", "store": True,
                      "safety_identifier": "s-1", "prompt_cache_key": "pk-1"}),
    Req("responses", {"input": "hello rules", "store": False, "stream": True,
                      "stream_options": {"include_usage": True}}),
    Req("messages", {"max_tokens": 50, "messages": USER, "temperature": 0.3, "top_p": 0.9, "top_k": 5,
                     "metadata": {"user_id": "u-1"}}),
]  # fmt: skip
CODEX_CLI = [
    # Codex CLI 0.169's request shape: developer items, no instructions, web_search offered.
    Req("responses", {"input": [DEV, ITEM], "tools": [RESP_FN, {"type": "web_search"}], "tool_choice": "auto",
                      "parallel_tool_calls": True, "reasoning": {"effort": "medium", "summary": "auto"}, "store": False,
                      "stream": True, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1",
                      "client_metadata": {"x-codex-installation-id": "inst-1"}}),
    Req("responses", {"input": "hello rules", "tools": [{"type": "web_search"}], "tool_choice": "auto",
                      "parallel_tool_calls": True}),
]  # fmt: skip
TOOL_ROUNDS = [
    Req("chat", {"tools": [CHAT_FN], "messages": [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
        {"role": "tool", "tool_call_id": "call_b", "content": "sun"}]}),
    Req("responses", {"tools": [RESP_FN], "input": [
        ITEM,
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "rain"}]}),
    Req("messages", {"max_tokens": 64, "tools": [MSG_FN], "messages": [
        *USER,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a", "name": "get_weather",
                                           "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "rain"}]}]}),
    Req("responses", {"input": "call tool", "tools": [{"type": "web_search"}, RESP_FN],
                      "tool_choice": {"type": "function", "name": "get_weather"}}),
]  # fmt: skip
REFUSED = [
    # Fields the proxy cannot honour: refused before dispatch (issue 17 F4), never forwarded.
    Req("chat", {"messages": USER, "base_url": "https://elsewhere.invalid"}, 400),
    Req("chat", {"messages": USER, "extra_body": {"top_k": 1}}, 400),
    Req("responses", {"input": "hello rules", "conversation": "conv_1"}, 400),
    Req("responses", {"input": "hello rules", "prompt": {"id": "pmpt_1"}}, 400),
    Req("messages", {"max_tokens": 64, "messages": USER, "response_format": {"type": "json_object"}}, 400),
]
PROXY_SUMMARY = {"type": "compaction", "encrypted_content": proxy_blob("The user said hello.")}
COMPACTION = [
    # A Codex CLI remote-compaction turn, and a later turn carrying the proxy's own summary item
    # (made on another upstream): it must be expanded, never sent as a blob the backend never minted.
    *both("responses", {"input": [DEV, ITEM, {"type": "compaction_trigger"}]}),
    *both("responses", {"input": [DEV, ITEM, PROXY_SUMMARY, ITEM]}),
    # `/v1/responses/compact` with every /responses field a client may add: only the CLI's
    # compaction fields reach the backend; `stream` is refused by the proxy itself.
    Req("compact", {"input": [DEV, ITEM, PROXY_SUMMARY], "store": False, "include": ["reasoning.encrypted_content"],
                    "client_metadata": {"x-codex-installation-id": "inst-1"}, "temperature": 0.2,
                    "tools": [RESP_FN], "tool_choice": "auto", "reasoning": {"effort": "low"}}),
    Req("compact", {"input": [ITEM], "stream": True}, 400),
]  # fmt: skip
ALL_SHAPES = [*NO_SYSTEM, *WITH_SYSTEM, *SAMPLING, *CODEX_CLI, *TOOL_ROUNDS, *REFUSED]
OPENAI_PATHS = (OPENAI_COMPAT, OPENAI_RESPONSES, GITLAB_OPENAI)
GITLAB_PATHS = (GITLAB_ANTHROPIC, GITLAB_OPENAI)

Scenario = Callable[["Run"], Awaitable[None]]


@dataclass(frozen=True)
class ProxyCase:
    paths: tuple[str, ...] = ()
    requests: tuple[Req, ...] = ()
    scenario: Scenario | None = None  # extra steps (a continuation, a state to set up)
    expect_violations: tuple[str, ...] = ()  # state rows: the state's own answer


@dataclass
class Run:
    proxy_url: str
    key: str
    fakes: Fakes
    up: Upstream
    http: httpx.AsyncClient
    notes: list[str] = field(default_factory=list)

    async def send(self, req: Req, *, model: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.key}", "anthropic-version": "2023-06-01"}
        body = {"model": model or self.up.model, **req.body}
        return await self.http.post(self.proxy_url + SURFACES[req.surface], json=body, headers=headers)

    async def expect(self, req: Req, *, model: str | None = None) -> httpx.Response:
        before = len(self.up.calls())
        resp = await self.send(req, model=model)
        where = f"{self.up.name} {req.surface} {sorted(req.body)}"
        assert resp.status_code == req.status, f"{where}: {resp.status_code} {resp.text[:400]}"
        if req.status == 200 and req.body.get("stream"):
            end = {"chat": "data: [DONE]", "responses": "event: response.completed", "messages": "event: message_stop"}
            broken = ('data: {"error"', "event: error", "event: response.failed")
            ok = end[req.surface] in resp.text and not any(b in resp.text for b in broken)
            assert ok, f"{where}: {resp.text[-400:]}"
        if req.status != 200:
            assert len(self.up.calls()) == before, f"{where}: refused input reached the upstream"
        return resp


# ---------------------------------------------------------------------- scenarios


async def continuation(run: Run) -> None:
    """A Responses continuation: the proxy expands previous_response_id from its own snapshot
    and sends items, never the id or item references."""
    first = await run.expect(Req("responses", {"input": "remember the word tulip"}))
    await run.expect(Req("responses", {"input": "which word?", "previous_response_id": first.json()["id"]}))
    sent = run.up.calls()[-1]["json"]
    assert "previous_response_id" not in sent and "item_reference" not in str(sent)


async def responses_only_model(run: Run) -> None:
    for req in both("chat", {"messages": USER}):
        await run.expect(req, model=RESPONSES_ONLY[0])
    assert {c["path"] for c in run.up.calls()} == {"/v1/responses"}


async def codex_expired_token(run: Run) -> None:
    """The backend's clock says the token is dead while the proxy still thinks it is live: a 401,
    one refresh, one retry, and the client never notices."""
    app = run.fakes.codex.app
    with app._lock:
        for token, (account, _exp) in list(app.access.items()):
            app.access[token] = (account, 0.0)
    await run.expect(Req("chat", {"messages": USER}))
    assert app.refresh_count == 1


async def openai_revoked_key(run: Run) -> None:
    """The first account's key was revoked: it is marked and the second account serves."""
    run.fakes.openai.app.keys.discard(OPENAI_KEYS[0])
    try:
        await run.expect(Req("chat", {"messages": USER}))
    finally:
        run.fakes.openai.app.keys.add(OPENAI_KEYS[0])


async def openai_unknown_model(run: Run) -> None:
    """An account lists a model its server does not serve: 404 there (logged by that server),
    and the path's own account serves the request."""
    from accounts.selectors import caches_clear
    from executors.openai_compat.services import account_add_openai_compat
    from infra.db import db_call
    from tests.fakes.base import FakeServer
    from tests.fakes.openai_compat import OpenAICompatApp

    other = FakeServer(OpenAICompatApp(keys=("sk-other",), models=("gpt-4.1",))).start()
    try:
        await db_call(
            account_add_openai_compat,
            label="lists-too-much",
            base_url=other.url + "/v1",
            api_key="sk-other",
            model_names=[run.up.model],
            priority=50,
        )
        caches_clear()
        await run.expect(Req("chat", {"messages": USER}))
        assert [v["rule"] for v in other.violations] == ["openai.model-not-found"]
        assert len(run.up.calls()) == 1
    finally:
        other.stop()


async def codex_login_and_refresh(run: Run) -> None:
    """The PKCE sign-in and a forced refresh, as the admin flow runs them."""
    from executors.codex.services import codex_pkce_complete, codex_pkce_start, codex_token_refresh
    from infra.db import db_call
    from statestore import get_store

    url = run.fakes.codex.url
    start = await db_call(
        codex_pkce_start, label="codex-a", base_url=url + "/backend-api/codex", provider_config={"auth_url": url}
    )
    browser = await run.http.get(start.url, follow_redirects=False)
    account = await db_call(codex_pkce_complete, callback_url=browser.headers["location"])
    current = await db_call(lambda: account.credential.secret["access_token"])
    await codex_token_refresh(store=get_store(), account_id=account.id, stale_access_token=current)
    assert run.fakes.codex.app.refresh_count >= 1


async def gitlab_login_and_refresh(run: Run) -> None:
    from executors.gitlab.services import gitlab_credential_refresh, gitlab_oauth_pkce_finish, gitlab_oauth_pkce_start
    from infra.db import db_call

    world = run.fakes.gitlab.world
    world.add_app("rules-app", redirect_uris=["http://localhost:17171/auth/callback"])
    start = await db_call(
        gitlab_oauth_pkce_start,
        label="duo-a",  # a re-login of the path's account (the same GitLab user)
        client_id="rules-app",
        redirect_uri="http://localhost:17171/auth/callback",
        instance_url=run.fakes.gitlab.instance_url,
        gateway_url=run.fakes.gitlab.gateway_url,
    )
    browser = await run.http.get(start.authorize_url, follow_redirects=False)
    account = await db_call(gitlab_oauth_pkce_finish, callback=browser.headers["location"])
    assert await asyncio.to_thread(gitlab_credential_refresh, account_id=account.id)


async def code_suggestions_fallback(run: Run) -> None:
    from accounts.models import UpstreamAccount
    from infra.db import db_call

    config = {"fallback_models": ["gitlab-duo-code"], "fallback": {"mode": "code_suggestions"}}

    def enable() -> None:
        from executors.gitlab.catalog import gitlab_model_names

        for account in UpstreamAccount.objects.filter(provider="gitlab"):
            account.provider_config = {**account.provider_config, **config}
            account.model_names = gitlab_model_names(account.provider_config)
            account.save(update_fields=["provider_config", "model_names"])

    await db_call(enable)
    from accounts.selectors import caches_clear

    caches_clear()
    for req in both("chat", {"messages": USER}):
        await run.expect(req, model="gitlab-duo-code")
    assert any(r["path"] == "/api/v4/code_suggestions/completions" for r in run.fakes.gitlab.instance.requests)


async def count_tokens_exact(run: Run) -> None:
    """count_tokens from a Messages client: on an Anthropic API account it is forwarded with
    only the fields count_tokens takes (never max_tokens or sampling fields)."""
    headers = {"authorization": f"Bearer {run.key}", "anthropic-version": "2023-06-01"}
    body = {"model": run.up.model, "system": "Be brief.", "messages": USER, "tools": [MSG_FN]}
    resp = await run.http.post(run.proxy_url + "/v1/messages/count_tokens", json=body, headers=headers)
    assert resp.status_code == 200 and resp.json()["input_tokens"] > 0, resp.text
    if run.up.name == ANTHROPIC_API:
        assert [r["json"] for r in run.fakes.anthropic.requests if r["path"].endswith("/count_tokens")] == [body]


async def anthropic_revoked_key(run: Run) -> None:
    """The first account's key was revoked: it is marked and the second account serves."""
    run.fakes.anthropic.app.keys.discard(ANTHROPIC_KEYS[0])
    try:
        await run.expect(Req("messages", {"max_tokens": 64, "messages": USER}))
    finally:
        run.fakes.anthropic.app.keys.add(ANTHROPIC_KEYS[0])


async def anthropic_unknown_model(run: Run) -> None:
    """An account lists a model its key cannot use: 404 there (logged by that server), and the
    path's own account serves the request."""
    from accounts.selectors import caches_clear
    from executors.anthropic.services import account_add_anthropic
    from infra.db import db_call
    from tests.fakes.anthropic import AnthropicApp
    from tests.fakes.base import FakeServer

    other = FakeServer(AnthropicApp(keys=("sk-ant-other",), models=("claude-haiku-4-5-20251001",))).start()
    try:
        await db_call(
            account_add_anthropic,
            label="lists-too-much",
            base_url=other.url,
            api_key="sk-ant-other",
            model_names=[run.up.model],
            priority=50,
        )
        caches_clear()
        await run.expect(Req("chat", {"messages": USER}))
        assert [v["rule"] for v in other.violations] == ["anthropic.model"]
        assert len(run.up.calls()) == 1
    finally:
        other.stop()


async def anthropic_largest_body(run: Run) -> None:
    """A Messages body just under the proxy's own size limit still fits the API's 32 MB."""
    from django.conf import settings

    filler = "x " * ((settings.PROXY_MAX_BODY_BYTES - 64 * 1024) // 2)
    await run.expect(Req("messages", {"max_tokens": 16, "messages": [{"role": "user", "content": filler}]}))


async def thinking_round_trips(run: Run) -> None:
    """Thinking blocks go back with their signatures: a Messages client resending its history,
    and a Responses client continuing with reasoning on."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = await run.expect(Req("messages", {"max_tokens": 2048, "thinking": thinking, "messages": USER}))
    history = [*USER, {"role": "assistant", "content": first.json()["content"]}, *USER]
    for req in both("messages", {"max_tokens": 2048, "thinking": thinking, "messages": history}):
        await run.expect(req)
    reasoning = {"effort": "low", "summary": "auto"}
    opened = await run.expect(Req("responses", {"input": "think", "reasoning": reasoning}))
    follow = {"input": "again", "reasoning": reasoning, "previous_response_id": opened.json()["id"]}
    await run.expect(Req("responses", follow))


# ------------------------------------------------------------------------- the table

_EVERY_OPENAI = ProxyCase(OPENAI_PATHS, tuple(ALL_SHAPES))
_EVERY_GATEWAY = ProxyCase(GITLAB_PATHS, tuple([*NO_SYSTEM, *WITH_SYSTEM, *CODEX_CLI, *TOOL_ROUNDS]))
_EVERY_ANTHROPIC = ProxyCase((GITLAB_ANTHROPIC, ANTHROPIC_API), tuple(ALL_SHAPES))
_EVERY_CODEX = ProxyCase((CODEX,), tuple(ALL_SHAPES))

PROXY_CASES: dict[str, ProxyCase] = {
    "codex.store": _EVERY_CODEX,
    "codex.stream": _EVERY_CODEX,
    "codex.unsupported-parameter": _EVERY_CODEX,
    "codex.instructions": _EVERY_CODEX,
    "codex.model": ProxyCase((CODEX,), tuple(NO_SYSTEM)),
    "codex.compaction-blob": ProxyCase((CODEX,), tuple(COMPACTION)),
    "codex.compact-fields": ProxyCase((CODEX,), tuple(COMPACTION)),
    "codex.fingerprint": ProxyCase((CODEX,), tuple(NO_SYSTEM)),
    "codex.auth": ProxyCase((CODEX,), scenario=codex_expired_token, expect_violations=("codex.auth",)),
    "codex.oauth.request": ProxyCase((CODEX,), scenario=codex_login_and_refresh),
    "openai.chat.unknown-parameter": _EVERY_OPENAI,
    "openai.responses.unknown-parameter": _EVERY_OPENAI,
    "openai.json": ProxyCase(OPENAI_PATHS, tuple(NO_SYSTEM)),
    "openai.model-required": ProxyCase(OPENAI_PATHS, tuple(NO_SYSTEM)),
    "openai.stream-options": ProxyCase(OPENAI_PATHS, tuple(SAMPLING)),
    "openai.tool-choice-without-tools": ProxyCase(OPENAI_PATHS, tuple(CODEX_CLI)),
    "openai.tool-choice-unknown-tool": ProxyCase(OPENAI_PATHS, tuple(TOOL_ROUNDS)),
    "openai.tool-call-pairing": ProxyCase(OPENAI_PATHS, tuple(TOOL_ROUNDS)),
    "openai.item-reference": ProxyCase((OPENAI_RESPONSES, OPENAI_COMPAT), scenario=continuation),
    "openai.previous-response-not-found": ProxyCase((OPENAI_RESPONSES, OPENAI_COMPAT), scenario=continuation),
    "openai.responses-only-model": ProxyCase((OPENAI_RESPONSES,), scenario=responses_only_model),
    "openai.schema": _EVERY_OPENAI,
    "openai.auth": ProxyCase((OPENAI_COMPAT,), scenario=openai_revoked_key, expect_violations=("openai.auth",)),
    "openai.model-not-found": ProxyCase((OPENAI_COMPAT,), scenario=openai_unknown_model),
    "gitlab.gateway.auth": _EVERY_GATEWAY,
    "gitlab.gateway.auth-type": _EVERY_GATEWAY,
    "gitlab.gateway.header-mismatch": _EVERY_GATEWAY,
    "gitlab.gateway.unit-primitive": _EVERY_GATEWAY,
    "gitlab.gateway.id-mismatch": _EVERY_GATEWAY,
    "gitlab.gateway.body": _EVERY_GATEWAY,
    "gitlab.gateway.model": _EVERY_GATEWAY,
    "gitlab.gateway.path": _EVERY_GATEWAY,
    "anthropic.version-header": _EVERY_ANTHROPIC,
    "anthropic.unknown-field": ProxyCase(
        (GITLAB_ANTHROPIC, ANTHROPIC_API), tuple(ALL_SHAPES), scenario=count_tokens_exact
    ),
    "anthropic.api-key": ProxyCase((ANTHROPIC_API,), tuple([*NO_SYSTEM, *TOOL_ROUNDS]), scenario=count_tokens_exact),
    "anthropic.auth": ProxyCase(
        (ANTHROPIC_API,), scenario=anthropic_revoked_key, expect_violations=("anthropic.auth",)
    ),
    "anthropic.model": ProxyCase((ANTHROPIC_API,), scenario=anthropic_unknown_model),
    "anthropic.size": ProxyCase((ANTHROPIC_API,), scenario=anthropic_largest_body),
    "anthropic.thinking-signature": ProxyCase((ANTHROPIC_API,), scenario=thinking_round_trips),
    "anthropic.schema": _EVERY_ANTHROPIC,
    "gitlab.rest.scope": ProxyCase((GITLAB_ANTHROPIC,), tuple(NO_SYSTEM)),
    "gitlab.rest.completions-body": ProxyCase((GITLAB_ANTHROPIC,), scenario=code_suggestions_fallback),
    "gitlab.oauth.request": ProxyCase((GITLAB_ANTHROPIC,), scenario=gitlab_login_and_refresh),
}


@pytest.fixture(scope="module")
def rule_fakes() -> Iterator[Fakes]:
    fakes = Fakes.serve()
    yield fakes
    fakes.stop()


def _cases() -> list[Any]:
    return [pytest.param(rule, path, id=f"{rule}|{path}") for rule, case in PROXY_CASES.items() for path in case.paths]


@pytest.mark.parametrize(("rule", "path"), _cases())
async def test_proxy_never_trips_rule(live_proxy: Any, rule_fakes: Fakes, rule: str, path: str) -> None:
    from accounts.services import client_key_create
    from infra.db import db_call

    case = PROXY_CASES[rule]
    rule_fakes.reset()
    up = await db_call(setup_path, path, rule_fakes, accounts=2)
    _, key = await db_call(client_key_create, name="rules", owner_label="rules@example.com")
    async with httpx.AsyncClient(timeout=30) as http:
        run = Run(live_proxy.url, key, rule_fakes, up, http)
        for req in case.requests:
            await run.expect(req)
        if case.scenario is not None:
            await case.scenario(run)
    logged = [v["rule"] for v in rule_fakes.violations()]
    # State rows: the state's own answer (once per transport tried: the Codex WebSocket handshake
    # meets an expired token before the HTTP request does); request rows: nothing, ever.
    assert set(logged) == set(case.expect_violations), logged
