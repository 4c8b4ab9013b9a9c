"""Developer self-service (/me/): own keys and usage only, within the team's allowance."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.models import ClientKey
from accounts.services import client_key_create, team_create
from audit.models import AdminAction, UsageRecord
from executors.openai_compat.services import account_add_openai_compat
from portal.services import SelfServiceRefused, member_key_create

pytestmark = pytest.mark.django_db

PASSWORD = "pw-dev-123456"


def _user(name: str) -> Any:
    return get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD)


def _signed_in(user: Any) -> Client:
    client = Client()
    resp = client.post("/me/login/", {"username": user.get_username(), "password": PASSWORD})
    assert resp.status_code == 302 and resp["Location"] == "/me/", resp.content[:500]
    return client


def test_sign_in_with_the_same_django_users_and_see_only_your_keys() -> None:
    ann, bob = _user("ann"), _user("bob")
    mine, _ = client_key_create(name="ann-laptop", owner_id=ann.pk)
    theirs, _ = client_key_create(name="bob-laptop", owner_id=bob.pk)
    unowned, _ = client_key_create(name="ci-bot")
    assert Client().get("/me/").status_code == 302  # signed out: to the login page
    page = _signed_in(ann).get("/me/")
    text = page.content.decode()
    assert page.status_code == 200 and "ann-laptop" in text and mine.prefix in text
    assert "bob-laptop" not in text and theirs.prefix not in text and "ci-bot" not in text
    assert unowned.prefix not in text
    # No account names or credentials anywhere on the page.
    account_add_openai_compat(
        label="secret-upstream", base_url="http://127.0.0.1:9/v1", api_key="sk-up", model_names=["m"]
    )
    text = _signed_in(ann).get("/me/").content.decode()
    assert "secret-upstream" not in text and "sk-up" not in text


def test_wrong_password_is_refused_and_the_admin_stays_closed() -> None:
    ann = _user("ann")
    resp = Client().post("/me/login/", {"username": "ann", "password": "nope"})
    assert resp.status_code == 200 and b"did not match" in resp.content
    client = _signed_in(ann)
    admin = client.get("/admin/")
    assert admin.status_code == 302 and "/admin/login/" in admin["Location"]


def test_create_within_the_team_allowance() -> None:
    ann, bob = _user("ann"), _user("bob")
    team = team_create(name="core", member_ids=[ann.pk], member_key_limit=1, allowed_models=["gpt-4o-mini", "gpt-4.1"])
    closed = team_create(name="closed", member_ids=[ann.pk], member_key_limit=0)
    client = _signed_in(ann)
    resp = client.post(
        "/me/keys/new/", {"name": "laptop", "team": team.pk, "expires_days": "30", "tokens_per_day": "500"}
    )
    assert resp.status_code == 200 and "no-store" in resp["Cache-Control"]
    raw = resp.context["raw_key"]
    key = ClientKey.objects.get(name="laptop")
    assert (key.owner, key.team, key.tokens_per_day, key.owner_label) == (ann, team, 500, "ann")
    assert key.expires_at is not None and (key.expires_at - timezone.now()).days in (29, 30)
    assert raw.startswith("sk-team-") and raw.encode() not in client.get("/me/").content
    log = AdminAction.objects.get(action="key.create")
    assert log.actor == ann
    # The allowance is used up: a second one is refused, and the form is gone.
    again = client.post("/me/keys/new/", {"name": "second", "team": team.pk}, follow=True)
    assert not ClientKey.objects.filter(name="second").exists()
    assert b"team" in again.content and b'id="create-key"' not in again.content
    with pytest.raises(SelfServiceRefused, match="limit per member"):
        member_key_create(user=ann, team_id=team.pk, name="second")
    with pytest.raises(SelfServiceRefused, match="does not let members create keys"):
        member_key_create(user=ann, team_id=closed.pk, name="x")
    with pytest.raises(SelfServiceRefused, match="not a member"):
        member_key_create(user=bob, team_id=team.pk, name="x")
    ClientKey.objects.filter(pk=key.pk).update(enabled=False)
    with pytest.raises(SelfServiceRefused, match="does not allow o3"):
        member_key_create(user=ann, team_id=team.pk, name="x", allowed_models=["o3"])


def test_rotate_and_revoke_only_your_own_keys() -> None:
    ann, bob = _user("ann"), _user("bob")
    mine, old_raw = client_key_create(name="ann-key", owner_id=ann.pk)
    theirs, _ = client_key_create(name="bob-key", owner_id=bob.pk)
    client = _signed_in(ann)
    for action in ("rotate", "revoke"):
        assert client.post(f"/me/keys/{theirs.pk}/{action}/").status_code == 404
        assert client.get(f"/me/keys/{mine.pk}/{action}/").status_code == 405  # POST only
    theirs.refresh_from_db()
    assert theirs.enabled and theirs.rotated_at is None
    rotated = client.post(f"/me/keys/{mine.pk}/rotate/")
    new_raw = rotated.context["raw_key"]
    mine.refresh_from_db()
    assert new_raw != old_raw and mine.rotated_at is not None and mine.prefix == new_raw[: len(mine.prefix)]
    client.post(f"/me/keys/{mine.pk}/revoke/")
    mine.refresh_from_db()
    assert not mine.enabled
    assert client.post(f"/me/keys/{mine.pk}/rotate/", follow=True).content.count(b"cannot be rotated") == 1
    assert [a.actor for a in AdminAction.objects.filter(action__in=("key.rotate", "key.update"))] == [ann, ann]


def test_usage_export_holds_only_your_records_without_accounts() -> None:
    ann, bob = _user("ann"), _user("bob")
    mine, _ = client_key_create(name="ann-key", owner_id=ann.pk)
    theirs, _ = client_key_create(name="bob-key", owner_id=bob.pk)
    for key in (mine, theirs):
        UsageRecord.objects.create(
            request_id=uuid.uuid4(),
            created_at=timezone.now(),
            client_key_id=key.pk,
            key_prefix=key.prefix,
            account_label="upstream-secret-name",
            surface="chat",
            requested_model=f"model-of-{key.name}",
            outcome="ok",
            status_code=200,
        )
    client = _signed_in(ann)
    body = b"".join(client.get("/me/usage.csv?days=3").streaming_content).decode()  # type: ignore[attr-defined]
    lines = body.strip().splitlines()
    assert lines[0].startswith("key_name,created_at") and len(lines) == 2
    assert "model-of-ann-key" in body and "bob" not in body and "upstream-secret-name" not in body
    page = client.get("/me/").content.decode()
    assert "model-of-ann-key" in page and "model-of-bob-key" not in page and "upstream-secret-name" not in page


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_self_made_key_works_and_carries_the_team_limits(live_proxy: Any, fake_openai: Any) -> None:
    def setup() -> tuple[str, int]:
        ann = _user("ann")
        account_add_openai_compat(
            label="up",
            base_url=fake_openai.url + "/v1",
            api_key="sk-upstream-A",
            model_names=["gpt-4o-mini", "gpt-4.1"],
        )
        team = team_create(
            name="core", member_ids=[ann.pk], member_key_limit=2, requests_per_minute=2, allowed_models=["gpt-4o-mini"]
        )
        resp = _signed_in(ann).post("/me/keys/new/", {"name": "laptop", "team": team.pk})
        return resp.context["raw_key"], team.pk

    raw, _ = await sync_to_async(setup)()
    headers = {"authorization": f"Bearer {raw}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=20) as client:
        codes = [
            (await client.post(live_proxy.url + "/v1/chat/completions", json=body, headers=headers)).status_code
            for _ in range(3)
        ]
        other_model = await client.post(
            live_proxy.url + "/v1/chat/completions", json={**body, "model": "gpt-4.1"}, headers=headers
        )
    assert codes == [200, 200, 429]
    assert other_model.status_code == 403
