"""The guided admin flow: the key is checked by listing models (paginated), then the account is added."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.flows import FlowError, flows_by_provider
from accounts.models import UpstreamAccount
from executors.anthropic import flows
from tests.executors.anthropic.conftest import KEYS
from tests.fakes.anthropic import MODELS

pytestmark = pytest.mark.django_db

URL = "/admin/accounts/upstreamaccount/guided/anthropic.api_key/"


def test_the_flow_is_registered() -> None:
    assert [f.key for f in flows_by_provider()["anthropic"]] == ["anthropic.api_key"]


def test_discovery_follows_pages_with_the_documented_headers(anthropic: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(flows, "PAGE_LIMIT", 1)
    assert flows.models_discover(anthropic.url, KEYS[0]) == sorted(MODELS)
    listed = [r for r in anthropic.requests if r["path"] == "/v1/models"]
    assert len(listed) == len(MODELS)
    assert listed[1]["query"] == f"limit=1&after_id={MODELS[0]}"
    assert listed[0]["headers"]["x-api-key"] == KEYS[0] and listed[0]["headers"]["anthropic-version"]


def test_discovery_errors_are_human(anthropic: Any) -> None:
    with pytest.raises(FlowError, match="rejected this key") as info:
        flows.models_discover(anthropic.url, "sk-ant-wrong")
    assert info.value.field == "api_key"
    with pytest.raises(FlowError, match="without /v1"):
        flows.models_discover(anthropic.url + "/v1", KEYS[0])
    with pytest.raises(FlowError, match="Could not connect"):
        flows.models_discover("http://127.0.0.1:9", KEYS[0])


def test_guided_flow_adds_the_account_with_the_base_url_normalised(anthropic: Any) -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client(enforce_csrf_checks=False)
    client.force_login(boss)
    client.get(URL)
    page = client.post(URL, {"label": "claude-team", "base_url": anthropic.url + "/v1/", "api_key": KEYS[0]})
    assert b'value="claude-sonnet-4-6"' in page.content, page.content[:2000]
    done = client.post(URL, {"models": ["claude-sonnet-4-6"], "priority": 2, "weight": 1})
    assert done.status_code == 302
    account = UpstreamAccount.objects.get(label="claude-team")
    assert (account.provider, account.base_url, account.model_names) == (
        "anthropic",
        anthropic.url,
        ["claude-sonnet-4-6"],
    )
    assert account.credential.secret == {"api_key": KEYS[0]} and account.priority == 2


def test_the_ssrf_guard_runs_before_discovery(anthropic: Any, settings: Any) -> None:
    settings.PROXY_ALLOW_PRIVATE_UPSTREAMS = False
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    client = Client(enforce_csrf_checks=False)
    client.force_login(boss)
    client.get(URL)
    client.post(URL, {"label": "x", "base_url": "http://169.254.169.254", "api_key": KEYS[0]})
    assert not UpstreamAccount.objects.exists()
    assert not [r for r in anthropic.requests if r["path"] == "/v1/models"]


def test_the_command_adds_an_account_with_discovered_models(anthropic: Any, monkeypatch: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEYS[1])
    out = StringIO()
    call_command("anthropic_add", "--label", "cli-claude", "--base-url", anthropic.url + "/v1", stdout=out)
    account = UpstreamAccount.objects.get(label="cli-claude")
    assert account.model_names == sorted(MODELS) and account.base_url == anthropic.url
    assert account.credential.secret == {"api_key": KEYS[1]} and KEYS[1] not in out.getvalue()


def test_test_now_sends_one_tiny_request(anthropic: Any) -> None:
    from accounts.providers import provider_get
    from executors.anthropic.services import account_add_anthropic

    account = account_add_anthropic(label="probe-me", base_url=anthropic.url, api_key=KEYS[0], model_names=[MODELS[0]])
    spec = provider_get("anthropic")
    assert spec is not None and spec.probe is not None
    result = spec.probe(account)
    assert result.ok, result
    [sent] = [r for r in anthropic.requests if r["path"] == "/v1/messages"]
    assert sent["json"]["max_tokens"] == 1 and sent["headers"]["x-api-key"] == KEYS[0]
    anthropic.app.keys.discard(KEYS[0])
    failed = spec.probe(account)
    assert not failed.ok and "401" in failed.message and KEYS[0] not in failed.upstream_text
