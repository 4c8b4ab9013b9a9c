"""Teams: keys inherit the team's models and limits; a key's own setting only narrows them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import ClientKey, Team
from accounts.selectors import key_limits_effective
from accounts.services import TeamInUse, client_key_create, client_key_update, team_create, team_delete, team_update
from audit.models import AdminAction
from tests.support.proxy import seed

pytestmark = pytest.mark.django_db


def _key(team: Team | None = None, **fields: Any) -> ClientKey:
    key, _ = client_key_create(name="k", team_id=team.pk if team else None, **fields)
    return ClientKey.objects.select_related("team").get(pk=key.pk)


def test_key_without_a_team_keeps_its_own_limits() -> None:
    limits = key_limits_effective(_key(requests_per_minute=5, budget_tokens=100, budget_period="week"))
    assert (limits.requests_per_minute, limits.tokens_per_day, limits.budgets) == (5, None, ((100, "week"),))
    assert limits.models_label() == "every model"


def test_team_limits_apply_to_keys_that_set_none() -> None:
    team = team_create(name="core", requests_per_minute=10, tokens_per_day=5000, allowed_models=["gpt-4.1"])
    limits = key_limits_effective(_key(team))
    assert (limits.requests_per_minute, limits.tokens_per_day) == (10, 5000)
    assert limits.models_label() == "gpt-4.1"


def test_a_key_narrows_but_never_widens_its_team() -> None:
    team = team_create(name="core", requests_per_minute=10, tokens_per_day=5000, budget_tokens=900, budget_period="day")
    wider = key_limits_effective(
        _key(team, requests_per_minute=50, tokens_per_day=99999, budget_tokens=10**6, budget_period="day")
    )
    assert (wider.requests_per_minute, wider.tokens_per_day, wider.budgets) == (10, 5000, ((900, "day"),))
    narrower = key_limits_effective(_key(team, requests_per_minute=3, budget_tokens=100, budget_period="day"))
    assert (narrower.requests_per_minute, narrower.budgets) == (3, ((100, "day"),))
    # Budgets of different periods both apply.
    both = key_limits_effective(_key(team, budget_tokens=20000, budget_period="month"))
    assert both.budgets == ((900, "day"), (20000, "month"))


def test_model_lists_intersect() -> None:
    team = team_create(name="core", allowed_models=["a", "b"])
    assert key_limits_effective(_key(team, allowed_models=["b", "c"])).models_label() == "b"
    disjoint = key_limits_effective(_key(team, allowed_models=["c"]))
    assert disjoint.models_label().startswith("none")


def test_team_services_write_the_action_log() -> None:
    user_model = get_user_model()
    boss = user_model.objects.create_superuser("boss", "b@example.com", "pw")
    ann = user_model.objects.create_user("ann")
    team = team_create(name="core", member_ids=[ann.pk], actor=boss, tokens_per_day=100)
    team_update(team=team, member_ids=[], tokens_per_day=50, actor=boss)
    update = AdminAction.objects.get(action="team.update")
    assert update.actor == boss
    assert update.changes == {"tokens_per_day": [100, 50], "members": [["ann"], []]}
    _key(team)
    with pytest.raises(TeamInUse):
        team_delete(team=team, actor=boss)
    ClientKey.objects.all().delete()
    team_delete(team=team, actor=boss)
    assert [a.action for a in AdminAction.objects.order_by("id")] == [
        "team.create",
        "team.update",
        "key.create",
        "team.delete",
    ]


def test_team_admin_add_and_change() -> None:
    user_model = get_user_model()
    boss = user_model.objects.create_superuser("boss", "b@example.com", "pw")
    ann = user_model.objects.create_user("ann")
    client = Client()
    client.force_login(boss)
    form = {
        "name": "core",
        "members": [ann.pk],
        "allowed_models": "gpt-4.1, gpt-4o-mini",
        "requests_per_minute": "30",
        "tokens_per_day": "",
        "budget_tokens": "",
        "budget_period": "month",
        "member_key_limit": "2",
    }
    resp = client.post("/admin/accounts/team/add/", form)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    team = Team.objects.get(name="core")
    assert list(team.members.all()) == [ann] and team.allowed_models == ["gpt-4.1", "gpt-4o-mini"]
    created = AdminAction.objects.get(action="team.create")
    assert created.actor == boss and created.changes["members"] == [None, ["ann"]]
    resp = client.post(f"/admin/accounts/team/{team.pk}/change/", {**form, "members": [], "requests_per_minute": "5"})
    assert resp.status_code == 302
    team.refresh_from_db()
    assert team.requests_per_minute == 5 and not team.members.exists()
    page = client.get("/admin/accounts/team/")
    assert b"5/min" in page.content


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_team_limits_and_models_are_enforced_on_the_request_path(live_proxy: Any, fake_openai: Any) -> None:
    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai)
    team = await sync_to_async(team_create)(name="core", requests_per_minute=3, allowed_models=["gpt-4o-mini"])
    key = await ClientKey.objects.aget(name="dev")
    # The key's own, wider limit does not lift the team's.
    await sync_to_async(client_key_update)(key=key, team_id=team.pk, requests_per_minute=100)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=20) as client:
        outside = await client.post(
            proxy.v1 + "/chat/completions", json={**body, "model": "gpt-4.1"}, headers=proxy.headers()
        )
        responses = await asyncio.gather(
            *(client.post(proxy.v1 + "/chat/completions", json=body, headers=proxy.headers()) for _ in range(6))
        )
    assert outside.status_code == 403 and "gpt-4.1" in outside.text
    assert Counter(r.status_code for r in responses) == {200: 3, 429: 3}
