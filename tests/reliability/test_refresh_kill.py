"""A worker killed or cancelled during a Codex token refresh: no double refresh, no lost
rotated token (store lock + persist-before-use in executors/codex/services.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import executors.codex.services as codex_services
from accounts.models import AccountState, Credential, UpstreamAccount
from executors.codex.services import CodexRefreshError, codex_token_refresh
from infra.db import db_call
from statestore import get_store
from tests.executors.codex.conftest import import_account

pytestmark = pytest.mark.django_db(transaction=True)


def _secret(account_id: int) -> dict[str, Any]:
    return dict(Credential.objects.get(account_id=account_id).secret)


async def test_cancelled_while_persisting_keeps_the_rotated_token(
    codex_fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a refresh whose database write is slow (the worker gets killed right then)
    account = await db_call(import_account, codex_fake)
    real_persist = codex_services._persist
    entered = threading.Event()

    def slow_persist(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        time.sleep(0.5)
        return real_persist(*args, **kwargs)

    monkeypatch.setattr(codex_services, "_persist", slow_persist)
    task = asyncio.create_task(codex_token_refresh(store=get_store(), account_id=account.id, force=True))
    assert await asyncio.to_thread(entered.wait, 5)
    # when the worker is cancelled after the auth server rotated the token
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.7)  # the write runs to completion in its thread
    # then the rotated refresh token was stored (the one the auth server now considers live)
    stored = await db_call(_secret, account.id)
    live = [t for t, (_, alive) in codex_fake.app.refresh.items() if alive]
    assert stored["refresh_token"] in live and codex_fake.app.refresh_count == 1
    # and the lock was released, so the next refresh works with it (no reuse error)
    monkeypatch.setattr(codex_services, "_persist", real_persist)
    outcome = await codex_token_refresh(store=get_store(), account_id=account.id, force=True)
    assert outcome.refreshed and codex_fake.app.refresh_count == 2


async def test_killed_holder_blocks_siblings_until_lock_expiry_no_double_refresh(codex_fake: Any) -> None:
    # given a worker that took the refresh lock and was SIGKILLed (it never releases it)
    account = await db_call(import_account, codex_fake)
    store = get_store()
    assert await store.set(f"lock:codex:refresh:{account.id}", b"dead-worker", ttl=2.0, only_if_absent=True)
    # when two other workers need a refresh meanwhile
    results = await asyncio.gather(
        codex_token_refresh(store=store, account_id=account.id, force=True, wait_seconds=0.3),
        codex_token_refresh(store=store, account_id=account.id, force=True, wait_seconds=0.3),
        return_exceptions=True,
    )
    # then neither refreshes (a retryable error, the account stays active) ...
    assert all(isinstance(r, CodexRefreshError) and not r.terminal for r in results)
    assert codex_fake.app.refresh_count == 0
    row = await db_call(UpstreamAccount.objects.get, id=account.id)
    assert row.state == AccountState.ACTIVE
    # ... and once the dead holder's lock expires, exactly one refresh happens for both
    await asyncio.sleep(2.1)
    stale = (await db_call(_secret, account.id))["access_token"]
    after = await asyncio.gather(
        codex_token_refresh(store=store, account_id=account.id, stale_access_token=stale),
        codex_token_refresh(store=store, account_id=account.id, stale_access_token=stale),
    )
    assert codex_fake.app.refresh_count == 1
    assert sorted(r.reason for r in after) == ["refreshed", "sibling"]


async def test_cancelled_mid_exchange_is_detected_not_silent(codex_fake: Any) -> None:
    """Known limit: if the worker dies after the auth server rotated but before the answer
    arrived, the new token existed only on the wire. The next refresh is refused as
    `refresh_token_reused` and the account is marked auth_failed (needs a re-login) rather
    than failing silently or retrying in a loop."""
    account = await db_call(import_account, codex_fake)
    started = threading.Event()

    def slow(token: str) -> None:  # runs in the fake before it rotates
        started.set()
        time.sleep(0.4)

    codex_fake.app.on_refresh = slow
    task = asyncio.create_task(codex_token_refresh(store=get_store(), account_id=account.id, force=True))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.6)
    codex_fake.app.on_refresh = None
    with pytest.raises(CodexRefreshError) as info:
        await codex_token_refresh(store=get_store(), account_id=account.id, force=True)
    assert info.value.terminal and info.value.code == "refresh_token_reused"
    row = await db_call(UpstreamAccount.objects.get, id=account.id)
    assert row.state == AccountState.AUTH_FAILED
