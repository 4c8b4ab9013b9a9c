"""The failure layer end to end: executors classify, dispatch alone retries and refreshes,
a 404 cools a model only when the upstream says the model is unknown, and upstream text is
redacted before any sink (client, usage record, attempt log, account, admin)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.flows.operations import account_test
from accounts.models import UpstreamAccount
from accounts.services import client_key_create
from executors.openai_compat.services import account_add_openai_compat
from infra.db import db_call
from state.cooldown import cooldowns_list
from statestore import get_store
from tests.fakes.base import Fault
from tests.support.proxy import usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

def _key() -> str:
    return client_key_create(name="dev")[1]


async def _chat(url: str, key: str, model: str = "gpt-4o-mini") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


async def _account(fake: Any, letter: str, priority: int = 0) -> Any:
    return await db_call(
        account_add_openai_compat,
        label=f"acct-{letter}",
        base_url=fake.url + "/v1",
        api_key=f"sk-upstream-{letter}",
        model_names=["gpt-4o-mini"],
        priority=priority,
    )


# --------------------------------------------------------------------------------- F4: 404s


async def test_unknown_model_404_cools_only_that_model_briefly_and_fails_over(
    live_proxy: Any, fake_openai: Any
) -> None:
    a = await _account(fake_openai, "A", priority=10)
    await _account(fake_openai, "B", priority=5)
    body = {"error": {"message": "The model `gpt-4o-mini` does not exist", "type": "invalid_request_error",
                      "code": "model_not_found"}}
    fake_openai.faults.push(Fault(kind="status", status=404, body=body))
    resp = await _chat(live_proxy.url, await db_call(_key))
    # the other account served it; A rests for (A, model) only, seconds not an hour
    assert resp.status_code == 200
    cooling = await cooldowns_list(get_store(), account_id=a.id)
    assert [c.scope for c in cooling] == ["model:gpt-4o-mini"] and cooling[0].remaining <= 10


async def test_other_404_passes_to_the_caller_with_its_own_code_and_cools_nothing(
    live_proxy: Any, fake_openai: Any
) -> None:
    a = await _account(fake_openai, "A")
    body = {"error": {"message": "Conversation conv_123 not found", "type": "invalid_request_error",
                      "code": "conversation_not_found"}}
    fake_openai.faults.push(Fault(kind="status", status=404, body=body))
    resp = await _chat(live_proxy.url, await db_call(_key))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "conversation_not_found"
    assert await cooldowns_list(get_store(), account_id=a.id) == []
    # and the next request goes to the same account as usual
    assert (await _chat(live_proxy.url, await db_call(_key))).status_code == 200


# ---------------------------------------------------------------------- F5: redaction, per sink

SECRET = "team-upstream-credential-0042"  # no well-known prefix: masked as the account's own value
PATTERNED = "sk-proj-abcdefghijklmnop0123"  # masked by pattern whoever's it is


def _leaky_401() -> Fault:
    message = f"Incorrect API key provided: {SECRET}. Also tried {PATTERNED}."
    return Fault(kind="status", status=401, body={"error": {"message": message, "code": "invalid_api_key"}}, times=5)


@pytest.fixture
def leaky(fake_openai: Any) -> UpstreamAccount:
    account = account_add_openai_compat(
        label="leaky", base_url=fake_openai.url + "/v1", api_key=SECRET, model_names=["gpt-4o-mini"]
    )
    fake_openai.faults.push(_leaky_401())
    return account


def _clean(text: str) -> bool:
    return SECRET not in text and PATTERNED not in text


async def test_redaction_client_usage_record_attempt_log_and_account(live_proxy: Any, leaky: UpstreamAccount) -> None:
    resp = await _chat(live_proxy.url, await db_call(_key))
    assert resp.status_code == 502
    assert _clean(resp.text) and "Incorrect API key provided" in resp.text  # the client sink
    row = (await usage_rows(1))[0]
    assert _clean(row.error_message) and "[REDACTED]" in row.error_message  # usage_record
    assert _clean(orjson.dumps(row.attempt_log).decode())  # attempt log
    account = await db_call(UpstreamAccount.objects.get, pk=leaky.pk)
    assert account.state == "auth_failed" and _clean(account.last_error)  # account last_error
    assert "[REDACTED]" in account.last_error


def test_redaction_in_the_admin(live_proxy: Any, leaky: UpstreamAccount) -> None:
    result = account_test(account=UpstreamAccount.objects.select_related("credential").get(pk=leaky.pk))
    assert not result.ok and _clean(result.upstream_text) and "[REDACTED]" in result.upstream_text
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client()
    client.force_login(boss)
    board = client.get("/admin/accounts/upstreamaccount/")
    page = client.get(f"/admin/accounts/upstreamaccount/{leaky.pk}/change/")
    assert board.status_code == page.status_code == 200
    assert _clean(board.content.decode()) and _clean(page.content.decode())
