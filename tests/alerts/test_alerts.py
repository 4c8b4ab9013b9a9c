"""Alerts against a real local webhook receiver (HTTP on 127.0.0.1) and Django's mail outbox:
one alert per change of state, for account health, budgets and quota windows."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from accounts.models import AccountState, UpstreamAccount
from accounts.services import account_create, client_key_create, team_create
from alerts.models import AlertChannel, AlertEvent, ChannelKind
from alerts.services import alert_channel_save, alerts_check
from audit.models import UsageRecord
from audit.rollups import rollups_update
from executors.openai_compat.services import account_add_openai_compat
from pricing.models import MoneyBudget
from pricing.services import money_budget_save
from state.quota import quota_snapshot_set
from statestore.factory import call_sync

pytestmark = pytest.mark.django_db(transaction=True)


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append({"json": json.loads(body), "content_type": self.headers["content-type"]})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[Any]:
    """A Slack-like incoming-webhook receiver: a real HTTP server on 127.0.0.1."""
    _Receiver.received, _Receiver.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/xyz"  # type: ignore[attr-defined]
    server.received = _Receiver.received  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def _channels(webhook: Any) -> None:
    alert_channel_save(AlertChannel(kind=ChannelKind.WEBHOOK, target=webhook.url))
    alert_channel_save(AlertChannel(kind=ChannelKind.EMAIL, target="ops@example.com, lead@example.com"))


def _texts(webhook: Any) -> list[str]:
    return [r["json"]["text"] for r in webhook.received]


def test_account_needing_a_human_alerts_once_then_recovery(webhook: Any) -> None:
    _channels(webhook)
    account = account_add_openai_compat(
        label="openai-main", base_url="https://api.openai.com/v1", api_key="sk-x", model_names=["gpt-4o-mini"]
    )
    alerts_check()
    assert webhook.received == [] and mail.outbox == []  # a healthy account says nothing
    UpstreamAccount.objects.filter(pk=account.pk).update(
        state=AccountState.AUTH_FAILED, last_error="401 invalid api key", last_error_at=datetime.now(UTC)
    )
    assert alerts_check() == 1
    alerts_check()  # the same state again: no second alert
    (text,) = _texts(webhook)
    assert "openai-main" in text and "needs a human" in text.lower()
    assert webhook.received[0]["content_type"] == "application/json"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com", "lead@example.com"]
    UpstreamAccount.objects.filter(pk=account.pk).update(state=AccountState.ACTIVE, last_error="")
    alerts_check()
    assert len(webhook.received) == 2 and _texts(webhook)[1].startswith("Recovered:")


def test_failing_account_from_usage_records_alerts(webhook: Any) -> None:
    _channels(webhook)
    account = account_add_openai_compat(
        label="flaky", base_url="https://api.openai.com/v1", api_key="sk-x", model_names=["gpt-4o-mini"]
    )
    now = datetime.now(UTC)
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(
                request_id=uuid.uuid4(),
                created_at=now - timedelta(seconds=i),
                account_id=account.pk,
                account_label="flaky",
                surface="chat",
                requested_model="gpt-4o-mini",
                outcome="upstream_error",
                status_code=502,
                attempts=1,
                attempt_log=[{"account": "flaky", "model": "gpt-4o-mini", "status": 502, "code": "connect_error"}],
                error_code="connect_error",
                error_message="connection refused",
            )
            for i in range(6)
        ]
    )
    alerts_check()
    (text,) = _texts(webhook)
    assert "flaky" in text and "failing" in text.lower()


def test_budget_passing_80_and_100_percent_alerts_once_each(webhook: Any) -> None:
    _channels(webhook)
    team = team_create(name="Platform")
    key, _ = client_key_create(name="alice-laptop", owner_label="alice@example.com", team_id=team.pk)
    money_budget_save(MoneyBudget(team=team, usd=Decimal("10.00"), period="month"))
    account = account_add_openai_compat(
        label="openai-main", base_url="https://api.openai.com/v1", api_key="sk-x", model_names=["gpt-4o-mini"]
    )

    def spend(usd: str) -> None:
        UsageRecord.objects.create(
            request_id=uuid.uuid4(),
            created_at=datetime.now(UTC),
            client_key_id=key.pk,
            account_id=account.pk,
            surface="chat",
            requested_model="gpt-4o-mini",
            outcome="ok",
            status_code=200,
            cost_nanousd=int(Decimal(usd) * 10**9),
            price_source="list",
        )
        rollups_update()
        alerts_check()

    spend("7.00")
    assert webhook.received == []  # 70 %
    spend("1.50")
    spend("0.10")  # still between 80 and 100: no second warning
    spend("1.60")
    texts = _texts(webhook)
    assert len(texts) == 2, texts
    assert "team Platform passed 80 % of its monthly money budget: $8.50 of $10.00" in texts[0]
    assert "has used all of its monthly money budget: $10.20 of $10.00" in texts[1]


def test_quota_window_under_10_percent_alerts(webhook: Any) -> None:
    _channels(webhook)
    account = account_create(
        label="codex-pro-1",
        provider="codex",
        base_url="https://chatgpt.com/backend-api/codex",
        model_names=["gpt-5.5"],
        credential_kind="oauth",  # the Codex sign-in credential
        secret={"access_token": "a", "refresh_token": "r"},
    )
    resets = datetime.now(UTC).timestamp() + 3600

    async def reading(store: Any, used: float) -> None:
        await quota_snapshot_set(
            store, account_id=account.pk, family="gpt-5", used_percent=used, resets_at=resets, window_minutes=300
        )

    call_sync(lambda store: reading(store, 85.0))
    alerts_check()
    assert webhook.received == []
    call_sync(lambda store: reading(store, 93.0))
    alerts_check()
    alerts_check()
    (text,) = _texts(webhook)
    assert "codex-pro-1" in text and "93 % used" in text and "7 % left" in text


def test_failed_delivery_is_retried_on_the_next_check(webhook: Any) -> None:
    alert_channel_save(AlertChannel(kind=ChannelKind.WEBHOOK, target=webhook.url))
    account = account_add_openai_compat(
        label="openai-main", base_url="https://api.openai.com/v1", api_key="sk-x", model_names=["gpt-4o-mini"]
    )
    UpstreamAccount.objects.filter(pk=account.pk).update(state=AccountState.NOT_ENTITLED)
    _Receiver.status = 500
    assert alerts_check() == 0
    event = AlertEvent.objects.get()
    assert not event.delivered and "HTTP 500" in event.last_error
    _Receiver.status = 200
    assert alerts_check() == 1
    assert AlertEvent.objects.get().delivered and len(webhook.received) == 2


def test_channel_targets_are_validated() -> None:
    with pytest.raises(ValidationError):
        alert_channel_save(AlertChannel(kind=ChannelKind.WEBHOOK, target="ftp://example.com/x"))
    with pytest.raises(ValidationError):
        alert_channel_save(AlertChannel(kind=ChannelKind.EMAIL, target="not an address"))
