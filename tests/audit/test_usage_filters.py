"""The dashboard's and the exports' new filters never widen what a user may see, and the
records list takes the same filters (drill-down)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.services import client_key_create, team_create
from audit.models import UsageRecord
from audit.rollups import rollups_update

pytestmark = pytest.mark.django_db


def _rec(key_id: int, model: str = "gpt-4o-mini", cost: int | None = 1000) -> UsageRecord:
    return UsageRecord(
        request_id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        client_key_id=key_id,
        account_id=1,
        account_label="acct-A",
        surface="chat",
        requested_model=model,
        outcome="ok",
        status_code=200,
        input_tokens=10,
        output_tokens=5,
        cost_nanousd=cost,
        price_source="list" if cost is not None else "unknown",
    )


@pytest.fixture
def world() -> dict[str, object]:
    users = get_user_model()
    alice = users.objects.create_user("alice", password="pw-alice-123", is_staff=True)
    alice.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    team = team_create(name="Mobile")
    mine, _ = client_key_create(name="alice-key", owner_id=alice.pk)
    bobs, _ = client_key_create(name="bob-key", owner_label="bob@example.com", team_id=team.pk)
    UsageRecord.objects.bulk_create([_rec(mine.pk), _rec(bobs.pk), _rec(bobs.pk, "gpt-5", None)])
    rollups_update()
    boss = users.objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    return {"alice": alice, "boss": boss, "team": team, "mine": mine, "bobs": bobs}


def _client(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def test_filters_cannot_reach_other_peoples_usage(world: dict[str, object]) -> None:
    alice = _client(world["alice"])
    team, bobs = world["team"], world["bobs"]
    for query in (f"team={team.pk}", f"key={bobs.pk}", "developer=bob@example.com"):  # type: ignore[attr-defined]
        page = alice.get(f"/admin/audit/usagerecord/dashboard/?{query}")
        # nothing of bob's: either the filter finds none of her keys, or (a key she may not
        # choose) the form refuses it and she sees her own usage only
        assert page.status_code == 200 and page.context["totals"]["requests"] in (0, 1), query
        assert b"bob@example.com</a>" not in page.content and b"bob-key" not in page.content, query
        body = b"".join(alice.get(f"/admin/audit/usagerecord/export/records.csv?{query}").streaming_content)  # type: ignore[attr-defined]
        assert b"bob" not in body and body.count(b"\n") <= 2, query  # at most her own record
        listing = alice.get(f"/admin/audit/usagerecord/?{query}")
        assert listing.status_code in (200, 302), query  # 302: a filter she cannot use (?e=1)
        if listing.status_code == 200:
            mine = world["mine"].pk  # type: ignore[attr-defined]
            assert {r.client_key_id for r in listing.context["cl"].result_list} <= {mine}, query
        # not even in the filter choices (the query she typed is echoed back, nothing more)
        assert b"bob-key" not in listing.content and b">bob@example.com<" not in listing.content, query
    # her own key is still hers through every filter
    page = alice.get(f"/admin/audit/usagerecord/dashboard/?key={world['mine'].pk}")  # type: ignore[attr-defined]
    assert page.context["totals"]["requests"] == 1


def test_team_filter_and_names_in_exports(world: dict[str, object]) -> None:
    boss = _client(world["boss"])
    team = world["team"]
    page = boss.get(f"/admin/audit/usagerecord/dashboard/?team={team.pk}")  # type: ignore[attr-defined]
    assert page.context["totals"]["requests"] == 2 and page.context["totals"]["unpriced"] == 1
    resp = boss.get(f"/admin/audit/usagerecord/export/records.csv?team={team.pk}")  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(b"".join(resp.streaming_content).decode())))  # type: ignore[attr-defined]
    assert {(r["key_name"], r["developer"], r["team"]) for r in rows} == {("bob-key", "bob@example.com", "Mobile")}
    assert sorted(r["cost_usd"] for r in rows) == ["", "0.000001000"]  # unknown price stays empty
    resp = boss.get("/admin/audit/usagerecord/export/rollups.csv?granularity=d")
    rollups = list(csv.DictReader(io.StringIO(b"".join(resp.streaming_content).decode())))  # type: ignore[attr-defined]
    by_key = {r["key_name"]: r for r in rollups}
    assert by_key["alice-key"]["developer"] == "alice" and by_key["bob-key"]["team"] == "Mobile"
    assert by_key["alice-key"]["cost_usd"] == "0.000001000"
    # drill-down: the records list takes the dashboard's filter names
    listing = boss.get(f"/admin/audit/usagerecord/?team={team.pk}&model=gpt-5")  # type: ignore[attr-defined]
    assert [r.requested_model for r in listing.context["cl"].result_list] == ["gpt-5"]
    assert b"bob@example.com" in listing.content and b"Mobile" in listing.content and b"unpriced" in listing.content


def test_new_admin_pages_need_their_permissions(world: dict[str, object]) -> None:
    alice = _client(world["alice"])  # staff with usage view permission only
    for url in (
        "/admin/pricing/pricerule/",
        "/admin/pricing/moneybudget/",
        "/admin/alerts/alertchannel/",
        "/admin/alerts/alertevent/",
        "/admin/pricing/pricerule/add/",
        "/admin/alerts/alertchannel/add/",
    ):
        assert alice.get(url).status_code == 403, url
    boss = _client(world["boss"])
    for url in ("/admin/pricing/pricerule/", "/admin/pricing/moneybudget/", "/admin/alerts/alertevent/"):
        assert boss.get(url).status_code == 200, url
    assert boss.get("/admin/alerts/alertevent/add/").status_code == 403  # alerts are written by the checks only
