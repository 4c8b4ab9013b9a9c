"""Upstream faults not already covered in tests/routing (see docs/reliability.md for the map):
connect refused, slow first byte past the read timeout, non-JSON (HTML) error bodies, a cut
non-stream body, and mid-stream cuts / malformed SSE on the translated surfaces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

import executors.http
from executors.openai_compat.services import account_add_openai_compat
from infra.db import db_call
from tests.fakes.base import Fault
from tests.reliability.conftest import closed_port
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

_BODIES: dict[str, dict[str, Any]] = {
    "chat/completions": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "responses": {"model": "gpt-4o-mini", "input": "hi"},
    "messages": {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.fixture
def one(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


@pytest.fixture
def short_read_timeout(settings: Any) -> Iterator[None]:
    # Pooled clients keep the timeouts they were built with: drop them before and after.
    settings.UPSTREAM_TIMEOUTS = {**settings.UPSTREAM_TIMEOUTS, "read": 0.5}
    executors.http._clients.clear()
    yield
    executors.http._clients.clear()


async def _post(setup: ProxySetup, path: str, **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.post(setup.v1 + "/" + path, json={**_BODIES[path], **extra}, headers=setup.headers())


def _dead_account(priority: int = 100) -> None:
    account_add_openai_compat(
        label="dead",
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        api_key="sk-dead",
        model_names=("gpt-4o-mini",),
        priority=priority,
    )


@pytest.fixture
def two(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai, accounts=2)


async def test_connect_refused_fails_over_to_next_account(one: ProxySetup) -> None:
    # given a higher-priority account whose upstream refuses connections
    await db_call(_dead_account)
    r = await _post(one, "chat/completions")
    assert r.status_code == 200
    rows = await usage_rows(1)
    assert rows[0].account_label == "acct-A" and rows[0].attempts == 2
    assert rows[0].attempt_log[0]["account"] == "dead"


async def test_connect_refused_only_account_is_openai_error(live_proxy: Any, fake_openai: Any) -> None:
    setup = await db_call(seed, live_proxy.url, fake_openai, accounts=0)
    await db_call(_dead_account)
    r = await _post(setup, "chat/completions")
    assert 500 <= r.status_code < 600 and r.status_code != 500
    assert set(r.json()["error"]) >= {"message", "type", "code"}


async def test_slow_first_byte_past_read_timeout_fails_over(two: ProxySetup, short_read_timeout: None) -> None:
    setup = two
    setup.fake.faults.push(Fault.slow(2.0).where(times=1))
    r = await _post(setup, "chat/completions", stream=True)
    assert r.status_code == 200 and r.content.rstrip().endswith(b"data: [DONE]")
    rows = await usage_rows(1)
    assert rows[0].account_label == "acct-B" and rows[0].attempts == 2


@pytest.mark.parametrize("path", list(_BODIES))
async def test_html_error_body_is_an_error_in_the_surface_format(one: ProxySetup, path: str) -> None:
    one.fake.faults.push(Fault.html(502))
    r = await _post(one, path)
    assert r.status_code == 502
    body = r.json()
    if path == "messages":
        assert body["type"] == "error" and body["error"]["type"]
    else:
        # Observed: the upstream's HTML page is quoted in the message (truncated, no secret).
        assert body["error"]["type"] and body["error"]["message"]


async def test_non_json_200_body_is_a_502_not_a_crash(one: ProxySetup) -> None:
    one.fake.faults.push(Fault(kind="status", status=200, body="not json at all", content_type="text/plain"))
    r = await _post(one, "chat/completions")
    assert r.status_code == 502 and r.json()["error"]["type"]


async def test_cut_non_stream_body_is_a_clean_error(one: ProxySetup) -> None:
    one.fake.faults.push(Fault.cut(after=0))
    r = await _post(one, "chat/completions")
    assert 500 <= r.status_code < 600 and r.status_code != 500
    assert r.json()["error"]["type"]


@pytest.mark.parametrize("path", ["responses", "messages"])
@pytest.mark.parametrize("fault", [Fault.cut(after=4), Fault.malformed(after=3)], ids=["cut", "malformed"])
async def test_mid_stream_fault_on_translated_surfaces_ends_with_error_event(
    one: ProxySetup, path: str, fault: Fault
) -> None:
    one.fake.faults.push(fault)
    r = await _post(one, path, stream=True)
    assert r.status_code == 200
    data = [orjson.loads(line[6:]) for line in r.content.split(b"\n") if line.startswith(b"data: {")]
    last = data[-1]
    if path == "messages":
        assert last["type"] == "error" and not any(d.get("type") == "message_stop" for d in data)
    else:
        assert last["type"] in ("error", "response.failed")
        assert not any(d.get("type") == "response.completed" for d in data)
    rows = await usage_rows(1)
    assert rows[0].outcome == "upstream_error"
