"""PostgreSQL/SQLite briefly unavailable: the hot path serves from its caches, usage stays in
the buffer while the flush fails, and everything lands once the database is back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper

from audit.models import UsageRecord
from audit.services import usage_buffer_depth, usage_flush
from infra.db import db_call
from tests.support.proxy import ProxySetup, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _chat(stream: bool) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def test_database_outage_serves_from_cache_and_flushes_later(
    proxy: ProxySetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        # given warm caches (key, accounts, catalog) from one request
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(False), headers=proxy.headers())
        assert r.status_code == 200
        assert len(await usage_rows(1)) == 1

        # when every new database connection fails, in every thread (the server's included)
        def down(self: Any) -> None:
            raise OperationalError("simulated outage: connection refused")

        monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", down)
        statuses = [
            (
                await client.post(proxy.v1 + "/chat/completions", json=_chat(i % 2 == 0), headers=proxy.headers())
            ).status_code
            for i in range(20)
        ]
        # then requests are still served from the caches
        assert statuses == [200] * 20
        # and the flush fails without losing anything: the 20 records stay buffered
        with pytest.raises(OperationalError):
            await usage_flush()
        assert await usage_buffer_depth() == 20
        # when the database comes back
        monkeypatch.undo()
    # then the next flush writes every record exactly once
    rows = await usage_rows(21)
    assert len(rows) == 21 and len({r.request_id for r in rows}) == 21
    assert await usage_buffer_depth() == 0
    assert await db_call(UsageRecord.objects.count) == 21


@pytest.mark.parametrize("path", ["/chat/completions", "/messages"])
async def test_database_down_past_the_cache_lifetime_is_a_503_recorded_as_such(
    proxy: ProxySetup, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Issue 17 (minor, F7): a 500 'internal proxy error' with code upstream_error, recorded as
    outcome=ok / 200, became an honest 503 in the client's dialect, recorded as proxy_error."""
    from accounts.selectors import caches_clear

    body = {**_chat(False), "max_tokens": 5}
    async with httpx.AsyncClient(timeout=15) as client:
        # given the database down and the caches expired (the key can no longer be looked up)
        def down(self: Any) -> None:
            raise OperationalError("simulated outage: connection refused")

        monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", down)
        caches_clear()
        r = await client.post(proxy.v1 + path, json=body, headers=proxy.headers(**{"anthropic-version": "2023-06-01"}))
        monkeypatch.undo()
    # then the client gets a retryable 503 in its own dialect
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    error = r.json()["error"]
    if path == "/messages":
        assert r.json()["type"] == "error" and error["type"] == "overloaded_error"
    else:
        assert error["code"] == "service_unavailable" and error["type"] == "server_error"
    # and the record says what happened
    rows = await usage_rows(1)
    assert [(row.outcome, row.status_code, row.error_code) for row in rows] == [
        ("proxy_error", 503, "service_unavailable")
    ]
