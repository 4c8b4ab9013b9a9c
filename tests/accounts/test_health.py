"""Account health from the usage records (accounts.health): what really happened, not the state column."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.health import HealthStatus, accounts_health
from accounts.models import AccountState, UpstreamAccount
from accounts.services import account_mark_state, account_update
from audit.models import UsageRecord
from executors.openai_compat.services import account_add_openai_compat
from tests.support.proxy import seed, usage_rows

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _account(label: str) -> UpstreamAccount:
    return account_add_openai_compat(label=label, base_url="http://127.0.0.1:9/v1", api_key="k", model_names=["m"])


def _record(minutes_ago: float, attempts: list[dict[str, Any]], *, account: UpstreamAccount, **kw: Any) -> None:
    UsageRecord.objects.create(
        request_id=uuid.uuid4(),
        created_at=NOW - timedelta(minutes=minutes_ago),
        account_id=account.pk,
        account_label=account.label,
        surface="chat",
        requested_model="m",
        outcome=kw.pop("outcome", "ok"),
        status_code=kw.pop("status_code", 200),
        attempts=len(attempts),
        attempt_log=attempts,
        **kw,
    )


def _ok(account: UpstreamAccount) -> dict[str, Any]:
    return {"account": account.label, "model": "m", "status": 200, "ms": 5}


def _fail(account: UpstreamAccount, status: int = 502, code: str = "upstream_connect_error") -> dict[str, Any]:
    return {"account": account.label, "model": "m", "status": status, "code": code, "ms": 3}


def test_failed_attempts_before_a_failover_count_against_the_failing_account() -> None:
    broken, good = _account("broken"), _account("good")
    for minute in (30, 20, 10, 5):
        # Every request tried `broken` first, then succeeded on `good`.
        _record(minute, [_fail(broken), _ok(good)], account=good)
    health = accounts_health(now=NOW)
    assert health[broken.pk].status == HealthStatus.FAILING
    b = health[broken.pk]
    assert (b.attempts, b.successes, b.consecutive_failures) == (4, 0, 4)
    assert health[broken.pk].last_error.startswith("HTTP 502 upstream_connect_error")
    assert health[broken.pk].last_error_at == NOW - timedelta(minutes=5)
    assert health[broken.pk].last_success_at is None
    assert health[good.pk].status == HealthStatus.HEALTHY and health[good.pk].success_rate == 1.0
    assert health[good.pk].last_success_at == NOW - timedelta(minutes=5)


def test_a_success_ends_the_streak_and_the_rate_counts_the_window() -> None:
    acct = _account("a")
    _record(50, [_fail(acct, 429, "rate_limited")], account=acct, outcome="upstream_error", status_code=429)
    _record(40, [_fail(acct, 429, "rate_limited")], account=acct, outcome="upstream_error", status_code=429)
    _record(30, [_ok(acct)], account=acct)
    _record(20, [_fail(acct, 500, "server_error")], account=acct, outcome="upstream_error", status_code=502)
    _record(10, [_ok(acct)], account=acct)
    _record(90, [_fail(acct)], account=acct, outcome="upstream_error", status_code=502)  # outside the hour
    h = accounts_health(now=NOW)[acct.pk]
    assert (h.attempts, h.successes, h.consecutive_failures) == (5, 2, 0)
    assert h.success_rate == pytest.approx(0.4)
    assert h.status == HealthStatus.FAILING  # 40 % over 5 attempts
    assert h.last_error.startswith("HTTP 500 server_error") and h.last_error_at == NOW - timedelta(minutes=20)


def test_a_stream_that_broke_after_the_first_byte_is_a_failure() -> None:
    acct = _account("a")
    _record(
        1,
        [_ok(acct)],
        account=acct,
        outcome="upstream_error",
        error_code="upstream_stream_error",
        error_message="connection reset mid-stream",
    )
    h = accounts_health(now=NOW)[acct.pk]
    assert (h.attempts, h.successes, h.consecutive_failures) == (1, 0, 1)
    assert h.status == HealthStatus.DEGRADED
    assert h.last_error == "HTTP 200 upstream_stream_error: connection reset mid-stream"


def test_state_that_needs_a_human_disabled_idle_and_older_success() -> None:
    human, off, idle = _account("human"), _account("off"), _account("idle")
    account_mark_state(account_id=human.pk, state=AccountState.AUTH_FAILED, error="401 token revoked")
    account_update(account=off, enabled=False)
    _record(3 * 60, [_ok(idle)], account=idle)  # a success three hours ago, nothing since
    health = accounts_health(now=NOW)
    assert health[human.pk].status == HealthStatus.NEEDS_HUMAN
    assert health[human.pk].needs_human == "Credential rejected" and health[human.pk].last_error == "401 token revoked"
    assert health[off.pk].status == HealthStatus.DISABLED
    assert health[idle.pk].status == HealthStatus.IDLE
    assert health[idle.pk].last_success_at == NOW - timedelta(hours=3)
    order = sorted(health.values(), key=lambda h: h.status.severity)
    assert [h.account_id for h in order] == [human.pk, idle.pk, off.pk]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_host_that_refuses_connections_shows_failing_and_cooling(live_proxy: Any, fake_openai: Any) -> None:
    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai, accounts=2)
    refused = proxy.accounts[0]  # the higher priority: every request tries it first
    await UpstreamAccount.objects.filter(pk=refused.pk).aupdate(base_url="http://127.0.0.1:1/v1")
    from accounts.services import cache_version_bump

    await sync_to_async(cache_version_bump)()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=20) as client:
        for _ in range(3):
            resp = await client.post(proxy.v1 + "/chat/completions", json=body, headers=proxy.headers())
            assert resp.status_code == 200  # served by the other account
    await usage_rows(3)
    health = await sync_to_async(accounts_health)()
    h = health[refused.pk]
    assert h.status in (HealthStatus.COOLING, HealthStatus.FAILING), h
    assert h.attempts >= 1 and h.successes == 0 and h.last_error and h.last_error_at is not None
    assert h.cooling and h.cooling_until is not None and h.cooling_until > timezone.now()
    assert health[proxy.accounts[1].pk].status == HealthStatus.HEALTHY
