"""An exception nobody classified (here: a credential refresh that raises a type dispatch does
not expect) still ends as a clear 500 in the client's dialect, and the usage record says so
instead of keeping its defaults (outcome ok, status 200)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from executors.openai_compat.executor import EXECUTOR
from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

REQUESTS = {
    "/v1/chat/completions": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses": {"model": "gpt-4o-mini", "input": "hi"},
    "/v1/messages": {"model": "gpt-4o-mini", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", list(REQUESTS))
async def test_unclassified_refresh_failure_is_a_recorded_500(
    proxy: ProxySetup, monkeypatch: pytest.MonkeyPatch, path: str, stream: bool
) -> None:
    async def exploding_refresh(account: Any) -> bool:
        raise RuntimeError("token endpoint returned something nobody expected: sk-secret-123")

    monkeypatch.setattr(EXECUTOR, "refresh_credential", exploding_refresh)
    proxy.fake.faults.push(Fault.http(401))  # a stale credential: dispatch asks for a refresh
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + path[3:], json={**REQUESTS[path], "stream": stream}, headers=proxy.headers())
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    body = r.json()
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
        message = body["error"]["message"]
    else:
        assert body["error"]["code"] == "internal_error" and body["error"]["type"] == "server_error"
        message = body["error"]["message"]
    assert "internal proxy error" in message and "sk-secret" not in r.text  # no exception text leaks
    (row,) = await usage_rows(1)
    assert (row.outcome, row.status_code, row.error_code) == ("proxy_error", 500, "internal_error")
    assert row.attempt_log[0]["status"] == 401  # the attempt that led there is kept
