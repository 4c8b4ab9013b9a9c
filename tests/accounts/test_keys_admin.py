"""Keys in the admin: usage against their limits, last use, tokens today, rotation."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import ClientKey
from accounts.services import client_key_update, team_create
from audit.models import AdminAction, UsageRecord
from audit.rollups import rollups_update
from tests.support.proxy import seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _boss() -> Client:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client()
    client.force_login(boss)
    return client


async def test_key_pages_show_usage_against_limits_last_use_and_today(live_proxy: Any, fake_openai: Any) -> None:
    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai)
    team = await sync_to_async(team_create)(name="core", tokens_per_day=50_000)
    key = await ClientKey.objects.aget(name="dev")
    await sync_to_async(client_key_update)(key=key, team_id=team.pk, requests_per_minute=30)
    async with httpx.AsyncClient(timeout=20) as client:
        for _ in range(2):
            resp = await client.post(proxy.v1 + "/chat/completions", json=BODY, headers=proxy.headers())
            assert resp.status_code == 200
    rows = await usage_rows(2)
    used = sum(r.input_tokens + r.output_tokens for r in rows)
    await sync_to_async(rollups_update)()

    def pages() -> tuple[str, str]:
        admin = _boss()
        return (
            admin.get("/admin/accounts/clientkey/").content.decode(),
            admin.get(f"/admin/accounts/clientkey/{key.pk}/change/").content.decode(),
        )

    listing, detail = await sync_to_async(pages)()
    for page in (listing, detail):
        assert "req/min 2 / 30" in page  # the team's 50k tokens/day applies, the key's own 30/min too
        assert re.search(rf"tok/day {used} / 50k", page)
        assert "just now" in page or "s ago" in page  # last use
        assert f"{used} tok" in page  # tokens today (rollups)


async def test_rotation_gives_a_new_secret_to_the_same_key(live_proxy: Any, fake_openai: Any) -> None:
    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai)
    key = await ClientKey.objects.aget(name="dev")
    async with httpx.AsyncClient(timeout=20) as client:
        assert (
            await client.post(proxy.v1 + "/chat/completions", json=BODY, headers=proxy.headers())
        ).status_code == 200
    await usage_rows(1)

    def rotate() -> tuple[int, str, str]:
        admin = _boss()
        assert admin.get(f"/admin/accounts/clientkey/{key.pk}/rotate/").status_code == 405  # POST only
        resp = admin.post(f"/admin/accounts/clientkey/{key.pk}/rotate/")
        return resp.status_code, resp["Cache-Control"], resp.context["raw_key"]

    status, cache, new_raw = await sync_to_async(rotate)()
    assert status == 200 and "no-store" in cache and new_raw != proxy.key
    async with httpx.AsyncClient(timeout=20) as client:
        old = await client.post(proxy.v1 + "/chat/completions", json=BODY, headers=proxy.headers())
        new = await client.post(
            proxy.v1 + "/chat/completions", json=BODY, headers={"authorization": f"Bearer {new_raw}"}
        )
    assert old.status_code == 401 and new.status_code == 200
    rows = await usage_rows(3)
    assert {r.client_key_id for r in rows if r.outcome == "ok"} == {key.pk}  # one history
    rotated = await ClientKey.objects.aget(pk=key.pk)
    assert rotated.rotated_at is not None and rotated.prefix == new_raw[: len(rotated.prefix)]
    log = await AdminAction.objects.aget(action="key.rotate")
    assert log.actor_label == "boss" and new_raw not in str(log.changes)
    assert await UsageRecord.objects.filter(client_key_id=key.pk).acount() == 2
