"""Rollups: incremental, idempotent, correct sums; scope; action log; streamed CSV."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import ClientKey
from accounts.services import client_key_create, client_key_update
from audit.models import AdminAction, Granularity, UsageRecord, UsageRollup
from audit.rollups import rollups_rebuild, rollups_update
from audit.selectors import UsageScope, usage_scope_for

pytestmark = pytest.mark.django_db

T0 = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) - timedelta(hours=2)


def _rec(**kw: object) -> UsageRecord:
    base: dict[str, object] = dict(
        request_id=uuid.uuid4(),
        created_at=T0,
        client_key_id=1,
        key_prefix="sk-team-aaa",
        account_id=1,
        account_label="acct-A",
        surface="chat",
        requested_model="gpt-4o-mini",
        outcome="ok",
        status_code=200,
        input_tokens=10,
        output_tokens=5,
        ttfb_ms=120,
        duration_ms=300,
        attempts=1,
    )
    base.update(kw)
    return UsageRecord(**base)


def test_rollups_sum_incrementally_and_idempotently() -> None:
    # given records over two hours, one failover, one upstream error, one slow
    UsageRecord.objects.bulk_create(
        [
            _rec(),
            _rec(ttfb_ms=4000, attempts=2),
            _rec(created_at=T0 + timedelta(hours=1), outcome="upstream_error", status_code=502, ttfb_ms=None),
        ]
    )
    # when the rollup runs twice
    assert rollups_update() == 3
    assert rollups_update() == 0
    # then hourly cells and the daily cell hold the sums exactly once
    hours = UsageRollup.objects.filter(granularity=Granularity.HOUR).order_by("bucket")
    assert [h.requests for h in hours] == [2, 1]
    first = hours[0]
    assert (first.failovers, first.input_tokens, first.ttfb_count, first.ttfb_b1, first.ttfb_b5) == (1, 20, 2, 1, 1)
    assert hours[1].upstream_errors == 1
    days = UsageRollup.objects.filter(granularity=Granularity.DAY)
    assert sum(d.requests for d in days) == 3
    # and new rows (including a late one for an old hour) add to the existing cells
    UsageRecord.objects.bulk_create([_rec(), _rec(created_at=T0 - timedelta(minutes=1))])
    assert rollups_update(batch=1) == 2
    assert sum(h.requests for h in UsageRollup.objects.filter(granularity=Granularity.HOUR)) == 5
    # and a rebuild from raw gives the same totals
    rollups_rebuild()
    assert sum(d.requests for d in UsageRollup.objects.filter(granularity=Granularity.DAY)) == 5


def test_staff_without_permission_sees_only_own_keys() -> None:
    users = get_user_model()
    alice = users.objects.create_user("alice", password="pw-alice-123", is_staff=True)
    mine, _ = client_key_create(name="alice-key", owner_id=alice.pk)
    other, _ = client_key_create(name="bob-key")
    UsageRecord.objects.bulk_create([_rec(client_key_id=mine.pk), _rec(client_key_id=other.pk)])
    rollups_update()
    assert usage_scope_for(alice) == UsageScope(all_keys=False, key_ids=frozenset({mine.pk}))
    client = Client()
    client.force_login(alice)
    page = client.get("/admin/audit/usagerecord/dashboard/")
    assert page.status_code == 200
    assert b"Showing only the keys you own" in page.content
    assert page.context["totals"]["requests"] == 1
    csv_body = b"".join(client.get("/admin/audit/usagerecord/export/records.csv").streaming_content)  # type: ignore[attr-defined]
    assert csv_body.count(b"\n") == 2  # header + alice's one record


def test_dashboard_and_exports_require_staff() -> None:
    client = Client()
    for url in ("/admin/audit/usagerecord/dashboard/", "/admin/audit/usagerecord/export/rollups.csv"):
        assert client.get(url).status_code == 302  # to the login page


def test_superuser_exports_stream_rollups() -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    UsageRecord.objects.bulk_create([_rec(), _rec(requested_model="gpt-4.1")])
    rollups_update()
    client = Client()
    client.force_login(boss)
    resp = client.get("/admin/audit/usagerecord/export/rollups.csv?granularity=h")
    assert resp.streaming
    lines = b"".join(resp.streaming_content).decode().splitlines()  # type: ignore[attr-defined]
    assert lines[0].startswith("bucket,account_id,account_label") and len(lines) == 3


def test_key_changes_are_logged_old_to_new_without_secrets() -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    key, raw = client_key_create(name="k", requests_per_minute=5, actor=boss)
    client_key_update(key=key, requests_per_minute=10, enabled=False, actor=boss)
    entries = list(AdminAction.objects.order_by("id"))
    assert [e.action for e in entries] == ["key.create", "key.update"]
    assert entries[1].changes == {"requests_per_minute": [5, 10], "enabled": [True, False]}
    assert entries[1].actor_label == "boss"
    blob = str([e.changes for e in entries])
    assert raw not in blob and ClientKey.objects.get().key_hash not in blob
