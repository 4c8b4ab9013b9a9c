"""The guided add-account framework and the OpenAI-compatible flow (against the fake upstream)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.flows import FlowError, flow_get, flows_by_provider
from accounts.models import UpstreamAccount
from audit.models import AdminAction
from executors.openai_compat.flows import discover_models

pytestmark = [pytest.mark.live, pytest.mark.django_db]


def test_registry_lists_every_provider_with_openai_compat_available() -> None:
    by_provider = flows_by_provider()
    assert [f.key for f in by_provider["openai_compat"]] == ["openai_compat.api_key"]
    # every provider kind is listed (its own accounts/<provider>/flows.py plugs flows in)
    assert {"openai_compat", "gitlab", "codex"} <= set(by_provider)
    assert flow_get("nope") is None


def test_discovery_errors_are_human(fake_openai: Any) -> None:
    assert discover_models(fake_openai.url + "/v1", "sk-upstream-A") == ["gpt-4.1", "gpt-4o-mini"]
    with pytest.raises(FlowError, match="rejected this API key") as info:
        discover_models(fake_openai.url + "/v1", "sk-bad")
    assert info.value.field == "api_key"
    with pytest.raises(FlowError, match="Could not connect"):
        discover_models("http://127.0.0.1:9/v1", "sk")


def test_guided_flow_adds_account_and_logs_it(fake_openai: Any) -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client(enforce_csrf_checks=False)
    client.force_login(boss)
    url = "/admin/accounts/upstreamaccount/guided/openai_compat.api_key/"
    assert client.get("/admin/accounts/upstreamaccount/add/").url.endswith("/guided/")  # type: ignore[attr-defined]
    client.get(url)
    page = client.post(url, {"label": "x", "base_url": fake_openai.url + "/v1", "api_key": "sk-upstream-A"})
    assert b'value="gpt-4.1"' in page.content
    done = client.post(url, {"models": ["gpt-4o-mini"], "extra_models": "custom-1", "priority": 3, "weight": 1})
    assert done.status_code == 302
    account = UpstreamAccount.objects.get(label="x")
    assert account.model_names == ["custom-1", "gpt-4o-mini"] and account.priority == 3
    assert account.credential.secret == {"api_key": "sk-upstream-A"}
    log = AdminAction.objects.get(action="account.create")
    assert log.actor == boss and "sk-upstream-A" not in str(log.changes)


def test_flow_posts_need_csrf(fake_openai: Any) -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(boss)
    resp = client.post("/admin/accounts/upstreamaccount/guided/openai_compat.api_key/", {"label": "x"})
    assert resp.status_code == 403
