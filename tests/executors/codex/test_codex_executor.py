"""The Codex executor against the fake backend: fingerprint on the wire, streaming, assembly,
quirks, quota signals and errors."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from executors.base import CooldownScope, UpstreamCall, UpstreamError
from executors.codex.executor import EXECUTOR
from executors.registry import executor_for
from formats import Dialect
from infra.db import db_call
from state.quota import quota_headroom, quota_snapshots
from statestore import get_store
from tests.executors.codex.conftest import account_info, import_account
from tests.fakes.base import Fault
from tests.fakes.codex import html_403_fault, overloaded_fault, token_invalidated_fault

pytestmark = pytest.mark.django_db(transaction=True)

MSG = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}


async def _account(fake: Any, **kw: Any) -> Any:
    account = await db_call(import_account, fake, **kw)
    return await db_call(account_info, account.id)


def _call(
    info: Any,
    *,
    stream: bool = True,
    body: dict[str, Any] | None = None,
    dialect: Dialect = Dialect.RESPONSES,
    headers: dict[str, str] | None = None,
    meta: dict[str, Any] | None = None,
    request_id: str = "r1",
) -> Any:
    return UpstreamCall(
        account=info,
        dialect=dialect,
        body=body or {"model": "gpt-5.5", "input": [MSG], "stream": stream},
        stream=stream,
        upstream_model="gpt-5.5",
        client_headers=headers or {},
        provider_meta=meta or {},
        request_id=request_id,
    )


async def _collect(resp: Any) -> list[dict[str, Any]]:
    out = [orjson.loads(ev.data) async for ev in resp.events]
    await resp.aclose()
    return out


async def test_registered() -> None:
    assert executor_for("codex") is EXECUTOR


async def test_fingerprint_on_the_wire(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    resp = await EXECUTOR.open(
        _call(
            info, headers={"session_id": "S-1", "user-agent": "curl/8", "x-api-key": "k", "x-codex-turn-state": "ts-1"}
        )
    )
    await _collect(resp)
    sent = codex_fake.requests[-1]
    h, body = sent["headers"], sent["json"]
    assert h["originator"] == "codex_cli_rs"
    assert h["user-agent"] == "codex_cli_rs/0.169.0 (Mac OS 26.5.0; arm64) iTerm.app/3.6.10"  # no product suffix
    assert h["session-id"] == "S-1" and "session_id" not in h  # legacy spelling normalised
    assert h["thread-id"] == h["x-client-request-id"] == "S-1" and h["x-codex-window-id"] == "S-1:0"
    assert h["chatgpt-account-id"] == "acc-fake-0001" and h["accept"] == "text/event-stream"
    assert h["x-codex-turn-state"] == "ts-1"
    assert "x-api-key" not in h and "curl" not in h["user-agent"]  # caller headers are not forwarded
    assert "x-codex-installation-id" not in h
    assert body["store"] is False and body["stream"] is True and body["prompt_cache_key"] == "S-1"
    cm = body["client_metadata"]
    assert cm["x-codex-installation-id"] == info.secret["installation_id"] and cm["session_id"] == "S-1"
    assert cm["turn_id"] == orjson.loads(h["x-codex-turn-metadata"])["turn_id"]
    assert resp.provider_meta == {"session_id": "S-1", "window_generation": 0}


async def test_each_account_has_its_own_installation_id(codex_fake: Any) -> None:
    a = await _account(codex_fake, label="a")
    b = await _account(codex_fake, label="b")
    for info in (a, b):
        await _collect(await EXECUTOR.open(_call(info)))
    ids = [r["json"]["client_metadata"]["x-codex-installation-id"] for r in codex_fake.requests]
    assert ids[0] != ids[1] and ids == [a.secret["installation_id"], b.secret["installation_id"]]


async def test_first_event_reaches_caller_before_upstream_finishes(codex_fake: Any) -> None:
    codex_fake.app.chunks, codex_fake.app.interval = 10, 0.1  # ~1.7 s of paced events
    info = await _account(codex_fake)
    started = time.monotonic()
    resp = await EXECUTOR.open(_call(info))
    first = await anext(resp.events)
    first_at = time.monotonic() - started
    assert codex_fake.control.completed_streams == 0  # the upstream is still sending
    rest = await _collect(resp)
    total = time.monotonic() - started
    assert first_at < total / 2 and total > 1.0
    types = [orjson.loads(first.data)["type"], *(e["type"] for e in rest)]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert not any(t.startswith("codex.") for t in types)  # codex.rate_limits is stripped


async def test_non_stream_request_assembled_from_streamed_upstream(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    resp = await EXECUTOR.open(_call(info, stream=False))
    assert resp.events is None and resp.body is not None
    assert resp.body["status"] == "completed" and resp.body["output"][0]["content"][0]["text"] == "echo: say hi"
    assert codex_fake.requests[-1]["json"]["stream"] is True  # streamed upstream anyway


async def test_empty_output_on_completed_is_rebuilt(codex_fake: Any) -> None:
    codex_fake.app.empty_output = True
    info = await _account(codex_fake)
    events = await _collect(await EXECUTOR.open(_call(info)))
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "echo: say hi"
    body = (await EXECUTOR.open(_call(info, stream=False, request_id="r2"))).body
    assert body is not None and body["output"][0]["type"] == "message"


async def test_chat_client_translated_with_tool_call(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    chat = {
        "model": "gpt-5.5",
        "stream": True,
        "temperature": 0.3,
        "max_tokens": 50,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "please call tool"}],
        "tools": [{"type": "function", "function": {"name": "exec_command", "parameters": {"type": "object"}}}],
    }
    events = await _collect(await EXECUTOR.open(_call(info, body=chat, dialect=Dialect.CHAT)))
    sent = codex_fake.requests[-1]["json"]
    assert "temperature" not in sent and "max_output_tokens" not in sent and sent["instructions"] == "be brief"
    calls = [e for e in events if e["type"] == "response.output_item.done"]
    assert calls[0]["item"]["type"] == "function_call" and calls[0]["item"]["name"] == "exec_command"


async def test_quota_from_headers_and_events(codex_fake: Any) -> None:
    codex_fake.app.primary_used, codex_fake.app.extra_family = 55.0, "codex_bengalfox"
    info = await _account(codex_fake)
    await _collect(await EXECUTOR.open(_call(info)))
    snaps = {(s.family, s.window): s for s in await quota_snapshots(get_store(), account_id=info.id)}
    assert snaps[("premium", "primary")].used_percent == 55.0 and snaps[("premium", "primary")].window_minutes == 300
    assert snaps[("premium", "secondary")].window_minutes == 10080
    assert ("codex_bengalfox", "primary") in snaps
    assert abs((await quota_headroom(get_store(), account_id=info.id, family="premium") or 0) - 0.45) < 1e-9


async def test_usage_limit_reached_gives_family_cooldown(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    resets_at = codex_fake.app.exhaust("premium", resets_in=1800)
    with pytest.raises(UpstreamError) as exc:
        await EXECUTOR.open(_call(info))
    err = exc.value
    assert err.code == "usage_limit_reached" and err.retryable and err.cooldown_scope is CooldownScope.FAMILY
    assert err.cooldown is not None and abs(err.cooldown - (resets_at - time.time())) < 3
    assert await quota_headroom(get_store(), account_id=info.id, family="premium") == 0.0
    assert len(codex_fake.requests) == 1  # never retried on the same account


async def test_html_403_and_session_terminated_and_overload(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    codex_fake.faults.push(html_403_fault())
    with pytest.raises(UpstreamError) as exc:
        await EXECUTOR.open(_call(info))
    assert exc.value.code == "codex_fingerprint_rejected" and "fingerprint" in exc.value.message
    codex_fake.faults.push(token_invalidated_fault())
    with pytest.raises(UpstreamError) as exc:
        await EXECUTOR.open(_call(info))
    assert exc.value.account_state == "session_terminated" and exc.value.client_status == 503
    codex_fake.faults.push(overloaded_fault())
    with pytest.raises(UpstreamError) as exc:  # error hidden in a 200 stream still fails over
        await EXECUTOR.open(_call(info))
    assert exc.value.retryable and exc.value.client_status == 503


async def test_real_fingerprint_mismatch_is_html_403(codex_fake: Any) -> None:
    codex_fake.app.min_client_version = "9.0.0"  # the backend now wants a newer CLI
    info = await _account(codex_fake)
    with pytest.raises(UpstreamError) as exc:
        await EXECUTOR.open(_call(info))
    assert exc.value.status == 403 and "client_version" in exc.value.message


async def test_cut_before_completed(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    codex_fake.faults.push(Fault.cut(after=2))  # codex.rate_limits + created, then the cut
    with pytest.raises(UpstreamError) as exc:
        await EXECUTOR.open(_call(info))
    assert exc.value.retryable
    codex_fake.faults.push(Fault.cut(after=6))
    resp = await EXECUTOR.open(_call(info, request_id="r3"))
    with pytest.raises(Exception, match=r"before response\.completed|broke"):
        await _collect(resp)


async def test_401_is_classified_for_dispatch_not_retried_here(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    # the upstream forgot our access token (revoked): one call, a classified 401, no refresh
    codex_fake.app.access.pop(info.secret["access_token"])
    with pytest.raises(UpstreamError) as failure:
        await EXECUTOR.open(_call(info))
    assert failure.value.refresh_credential and failure.value.status == 401
    assert len([r for r in codex_fake.requests if r["path"].endswith("/responses")]) == 1
    assert codex_fake.app.refresh_count == 0
    # dispatch then asks for the refresh: a rotation, and the new token is used from now on
    assert await EXECUTOR.refresh_credential(info) is True
    await _collect(await EXECUTOR.open(_call(info, request_id="r9")))
    tokens = [r["headers"]["authorization"] for r in codex_fake.requests if r["path"].endswith("/responses")]
    assert len(tokens) == 2 and tokens[0] != tokens[1] and codex_fake.app.refresh_count == 1


async def test_expiring_token_refreshed_inline(codex_fake: Any) -> None:
    info = await _account(codex_fake, access_ttl=30)
    await _collect(await EXECUTOR.open(_call(info)))
    assert codex_fake.app.refresh_count == 1


async def test_snapshot_meta_continuation(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    meta = {"session_id": "0199aaaa-0000-7000-8000-000000000001", "window_generation": 2}
    resp = await EXECUTOR.open(_call(info, meta=meta))
    await _collect(resp)
    h = codex_fake.requests[-1]["headers"]
    assert h["session-id"] == meta["session_id"] and h["x-codex-window-id"] == meta["session_id"] + ":2"
    assert resp.provider_meta == meta


async def test_stateless_resend_keeps_content_derived_session(codex_fake: Any) -> None:
    info = await _account(codex_fake)
    first = {"model": "gpt-5.5", "input": [MSG], "instructions": "be brief", "stream": True}
    await _collect(await EXECUTOR.open(_call(info, body=first)))
    answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "echo"}]}
    second = {**first, "input": [MSG, answer, {**MSG, "content": [{"type": "input_text", "text": "again"}]}]}
    await _collect(await EXECUTOR.open(_call(info, body=second, request_id="r2")))
    s1, s2 = (r["headers"]["session-id"] for r in codex_fake.requests)
    assert s1 == s2


def _turns(dialect: Dialect, system: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Turn 1 and turn 2 of one conversation as a stateless client of `dialect` sends them."""
    if dialect is Dialect.RESPONSES:
        dev = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": system}]}]
        head = dev if system else []
        answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "echo"}]}
        first = {"model": "gpt-5.5", "stream": True, "input": [*head, MSG]}
        again = {**MSG, "content": [{"type": "input_text", "text": "again"}]}
        return first, {**first, "input": [*head, MSG, answer, again]}
    history: list[dict[str, Any]] = [{"role": "user", "content": "say hi"}]
    later = [*history, {"role": "assistant", "content": "echo"}, {"role": "user", "content": "again"}]
    if dialect is Dialect.CHAT:
        sys_msgs = [{"role": "system", "content": system}] if system else []
        first = {"model": "gpt-5.5", "stream": True, "messages": [*sys_msgs, *history]}
        return first, {**first, "messages": [*sys_msgs, *later]}
    first = {"model": "gpt-5.5", "stream": True, "max_tokens": 64, "messages": history}
    if system:
        first["system"] = system
    return first, {**first, "messages": later}


@pytest.mark.parametrize("system", [None, "Answer tersely."])
@pytest.mark.parametrize("dialect", [Dialect.CHAT, Dialect.RESPONSES, Dialect.MESSAGES])
async def test_instructions_and_session_stable_across_turns(
    codex_fake: Any, dialect: Dialect, system: str | None
) -> None:
    """Every dialect, with or without a system prompt: the backend gets instructions or a
    developer item (never neither), caller text maps the same way on both turns, and the
    content-derived session id is the same for turn 1 and turn 2."""
    info = await _account(codex_fake)
    first, second = _turns(dialect, system)
    for n, body in enumerate((first, second)):
        await _collect(await EXECUTOR.open(_call(info, body=body, dialect=dialect, request_id=f"t{n}")))
    sent = [r for r in codex_fake.requests if r["path"] == "/backend-api/codex/responses"]
    assert len(sent) == 2
    bodies = [r["json"] for r in sent]
    for body in bodies:
        developer = [i for i in body["input"] if i.get("role") == "developer"]
        if system is None:
            assert body["instructions"] == "You are a helpful assistant." and not developer
        elif dialect is Dialect.RESPONSES:
            assert "instructions" not in body and developer  # the official CLI's shape, kept
        else:
            assert body["instructions"] == system  # Chat system / Anthropic system -> instructions
    assert bodies[0].get("instructions") == bodies[1].get("instructions")
    s1, s2 = (r["headers"]["session-id"] for r in sent)
    assert s1 == s2 and s1 == bodies[0]["prompt_cache_key"] == bodies[1]["prompt_cache_key"]
