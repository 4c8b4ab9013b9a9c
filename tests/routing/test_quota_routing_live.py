"""Quota-aware routing across two Codex accounts: new sessions go where the window has
headroom, and `usage_limit_reached` on one account fails over invisibly."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accounts.services import client_key_create
from executors.codex.services import codex_import_auth_json
from state.quota import quota_snapshot_set
from tests.fakes.base import FakeServer
from tests.fakes.codex import CodexFakeApp, FakeChatGPTAccount

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BUSY = FakeChatGPTAccount(account_id="acc-busy", email="busy@example.com", user_id="user-busy")
IDLE = FakeChatGPTAccount(account_id="acc-idle", email="idle@example.com", user_id="user-idle")


@pytest.fixture(scope="module")
def codex() -> Iterator[FakeServer[CodexFakeApp]]:
    server = FakeServer(CodexFakeApp(accounts=(BUSY, IDLE))).start()
    yield server
    server.stop()


@pytest.fixture
def pool(live_proxy: Any, codex: FakeServer[CodexFakeApp]) -> dict[str, Any]:
    codex.reset()
    accounts = {
        fake.account_id: codex_import_auth_json(
            data=codex.app.auth_json(fake.account_id),
            label=f"codex-{fake.account_id}",
            base_url=codex.url + "/backend-api/codex",
            model_names=["gpt-5.5"],
            provider_config={"auth_url": codex.url},
        )
        for fake in (BUSY, IDLE)
    }
    _, key = client_key_create(name="dev")
    return {"url": live_proxy.url, "key": key, "accounts": accounts, "fake": codex}


async def _ask(client: httpx.AsyncClient, pool: dict[str, Any], text: str) -> httpx.Response:
    return await client.post(
        pool["url"] + "/v1/responses",
        json={"model": "gpt-5.5", "input": text},
        headers={"authorization": f"Bearer {pool['key']}"},
    )


def _served_by(fake: FakeServer[CodexFakeApp]) -> Counter[str]:
    return Counter(
        r["headers"].get("chatgpt-account-id", "") for r in fake.requests if r["path"].endswith("/responses")
    )


async def test_new_sessions_go_to_the_account_with_headroom(pool: dict[str, Any]) -> None:
    from statestore import get_store

    # given readings: the busy account's window is 95 % used, the idle one's 10 %
    store = get_store()
    for fake, used in ((BUSY, 95.0), (IDLE, 10.0)):
        await quota_snapshot_set(
            store,
            account_id=pool["accounts"][fake.account_id].id,
            family="premium",
            used_percent=used,
            resets_at=time.time() + 3600,
            window_minutes=300,
        )
    # when six new conversations start (equal priority: round robin would alternate)
    async with httpx.AsyncClient(timeout=20) as client:
        for i in range(6):
            assert (await _ask(client, pool, f"new conversation {i}")).status_code == 200
    # then every one went to the account with headroom
    assert _served_by(pool["fake"]) == {IDLE.account_id: 6}


async def test_usage_limit_reached_fails_over_invisibly(pool: dict[str, Any]) -> None:
    from state.cooldown import cooldowns_list
    from statestore import get_store

    pool["fake"].app.exhaust("premium", account_id=BUSY.account_id)
    async with httpx.AsyncClient(timeout=20) as client:
        answers = [await _ask(client, pool, f"question {i}") for i in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200]
    served = _served_by(pool["fake"])
    # the exhausted account was asked at most once (then cooled until its reset), never again
    assert served[BUSY.account_id] <= 1 and served[IDLE.account_id] == 4
    busy = pool["accounts"][BUSY.account_id]
    views = await cooldowns_list(get_store(), account_id=busy.id)
    if served[BUSY.account_id]:
        assert views and views[0].remaining > 3000, "cooled until the window resets, not for a few seconds"
