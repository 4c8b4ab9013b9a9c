"""The catalog is edited in the admin through services that invalidate every process's cache."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from routing.models import CatalogEntry

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_creates_an_alias_and_bumps_the_cache_version() -> None:
    from accounts.services import CACHE_VERSION_KEY
    from statestore.factory import call_sync

    get_user_model().objects.create_superuser("root", "", "pw-123456")
    client = Client()
    client.login(username="root", password="pw-123456")
    before = call_sync(lambda s: s.get(CACHE_VERSION_KEY))
    r = client.post(
        "/admin/routing/catalogentry/add/",
        {
            "name": "team-default",
            "targets": "gpt-4.1, gpt-4o-mini",
            "strategy": "round_robin",
            "listed": "on",
            "enabled": "on",
        },
    )
    assert r.status_code == 302, r.content[:500]
    entry = CatalogEntry.objects.get(name="team-default")
    assert entry.targets == ["gpt-4.1", "gpt-4o-mini"]
    assert call_sync(lambda s: s.get(CACHE_VERSION_KEY)) != before
    page = client.get("/admin/routing/catalogentry/")
    assert b"gpt-4.1, gpt-4o-mini" in page.content
