"""Dispatch alone retries: one dead Codex token costs at most 2 upstream calls and 1 refresh."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accounts.services import client_key_create
from infra.db import db_call
from tests.executors.codex.conftest import import_account
from tests.fakes.base import Fault
from tests.support.proxy import usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MSG = {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}


def _key() -> str:
    return client_key_create(name="dev")[1]



async def test_dead_codex_token_costs_two_upstream_calls_and_one_refresh(live_proxy: Any, codex_fake: Any) -> None:
    # given a Codex account whose every request is refused with 401 (a token that stays dead)
    await db_call(import_account, codex_fake)
    codex_fake.faults.push(Fault(kind="status", status=401, path="/backend-api/codex/responses", times=10))
    key = await db_call(_key)
    body = {"model": "gpt-5.5", "input": [MSG], "stream": False}
    async with httpx.AsyncClient(timeout=30) as client:
        headers = {"authorization": f"Bearer {key}"}
        resp = await client.post(live_proxy.url + "/v1/responses", json=body, headers=headers)
    # then the client gets a 502, after exactly 2 upstream calls and 1 token refresh
    assert resp.status_code == 502
    calls = [r for r in codex_fake.requests if r["path"].endswith("/codex/responses")]
    assert len(calls) == 2 and codex_fake.app.refresh_count == 1
    rows = await usage_rows(1)
    assert rows[0].attempts == 2 and [a["status"] for a in rows[0].attempt_log] == [401, 401]
