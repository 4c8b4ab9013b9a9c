"""Admin-entered upstream URLs (accounts/validators.py) and redirects never followed."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from django.core.exceptions import ValidationError

from accounts.validators import upstream_url_validate
from executors.openai_compat.flows import ConnectForm
from executors.openai_compat.services import account_add_openai_compat
from tests.fakes.base import Fault
from tests.support.proxy import seed, usage_rows


@pytest.mark.parametrize(
    "url",
    [
        "ftp://api.example.com/v1",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http://user:pw@api.openai.com/v1",
        "http://127.0.0.1:8000/v1",
        "http://localhost/v1",
        "http://10.0.0.5/v1",
        "http://192.168.1.1/v1",
        "http://172.16.0.1/v1",
        "http://100.64.0.1/v1",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://[fe80::1]/v1",
        "http://0.0.0.0/v1",
        "http://metadata.google.internal/computeMetadata/v1",
        "",
        "not a url",
    ],
)
def test_refused_without_private_allowance(url: str) -> None:
    with pytest.raises(ValidationError):
        upstream_url_validate(url, allow_private=False)


def test_public_address_accepted() -> None:
    assert upstream_url_validate("https://8.8.8.8/v1/", allow_private=False) == "https://8.8.8.8/v1"


def test_hostname_resolving_to_metadata_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_resolve(host: str, port: int, *a: Any, **k: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_resolve)
    with pytest.raises(ValidationError) as info:
        upstream_url_validate("https://innocent.example.com/v1", allow_private=False)
    assert info.value.code == "metadata"


def test_hostname_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_resolve(host: str, port: int, *a: Any, **k: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_resolve)
    with pytest.raises(ValidationError) as info:
        upstream_url_validate("https://mixed.example.com/v1", allow_private=False)
    assert info.value.code == "private"


def test_unresolvable_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a: Any, **k: Any) -> Any:
        raise socket.gaierror("no such host")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(ValidationError):
        upstream_url_validate("https://nope.invalid/v1", allow_private=False)


def test_metadata_refused_even_when_private_allowed() -> None:
    with pytest.raises(ValidationError):
        upstream_url_validate("http://169.254.169.254/v1", allow_private=True)
    assert upstream_url_validate("http://127.0.0.1:9/v1", allow_private=True) == "http://127.0.0.1:9/v1"


@pytest.mark.django_db
def test_services_and_admin_form_refuse_private_urls(settings: Any) -> None:
    settings.PROXY_ALLOW_PRIVATE_UPSTREAMS = False
    with pytest.raises(ValidationError):
        account_add_openai_compat(label="x", base_url="http://127.0.0.1/v1", api_key="k", model_names=["m"])
    from executors.codex.services import codex_account_save
    from executors.gitlab.exceptions import GitLabError
    from executors.gitlab.services import gitlab_pat_add

    with pytest.raises(ValidationError):
        codex_account_save(label="c", secret={}, base_url="http://10.0.0.1/backend-api/codex")
    with pytest.raises((ValidationError, GitLabError)):
        gitlab_pat_add(label="g", token="glpat-x", instance_url="http://169.254.169.254")
    form = ConnectForm(data={"label": "x", "base_url": "http://192.168.0.10/v1", "api_key": "k"})
    assert not form.is_valid() and "base_url" in form.errors
    from accounts.models import UpstreamAccount

    assert not UpstreamAccount.objects.exists()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_upstream_redirect_is_not_followed(live_proxy: Any, fake_openai: Any) -> None:
    from asgiref.sync import sync_to_async

    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai)
    before = len(fake_openai.requests)
    # given an upstream that answers with a redirect to somewhere else (itself, to count hits)
    fake_openai.faults.push(Fault.http(302, headers={"location": fake_openai.url + "/v1/chat/completions"}))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            proxy.v1 + "/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers=proxy.headers(),
        )
    # then the proxy did not follow it: one upstream request, an error to the client
    assert r.status_code == 502 and "error" in r.json()
    assert len(fake_openai.requests) - before == 1
    await usage_rows(1)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_client_cannot_choose_the_upstream(live_proxy: Any, fake_openai: Any) -> None:
    from asgiref.sync import sync_to_async

    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai)
    # fields and headers a client might use to steer the proxy are ignored, not honoured
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            proxy.v1 + "/chat/completions",
            json={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hi"}],
                "base_url": "http://169.254.169.254/",
                "api_base": "http://169.254.169.254/",
            },
            headers=proxy.headers(**{"x-upstream-url": "http://169.254.169.254/", "host": "169.254.169.254"}),
        )
    assert r.status_code in (200, 400)
    assert all("169.254" not in str(req.get("url", "")) for req in fake_openai.requests)
    await usage_rows(1)


# --------------------------------------------------------------------- issue 17 F6: provider_config

BAD_CONFIGS = [
    {"auth_url": "http://169.254.169.254/latest/meta-data"},
    {"gateway_url": "http://127.0.0.1:6379"},
    {"instance_url": "http://10.0.0.5"},
    {"oauth": {"token_url": "http://[::1]/token"}},
]


@pytest.mark.django_db
@pytest.mark.parametrize("config", BAD_CONFIGS, ids=lambda c: next(iter(c)))
def test_provider_config_urls_are_refused_on_save(settings: Any, admin_client: Any, config: dict[str, Any]) -> None:
    from accounts.models import UpstreamAccount
    from accounts.services import account_update

    account = account_add_openai_compat(label="a", base_url="https://8.8.8.8/v1", api_key="k", model_names=["m"])
    settings.PROXY_ALLOW_PRIVATE_UPSTREAMS = False
    # the service
    with pytest.raises(ValidationError, match="provider_config"):
        account_update(account=account, provider_config=config)
    # the admin change form (what a staff user with change rights uses)
    import json

    page = admin_client.post(
        f"/admin/accounts/upstreamaccount/{account.pk}/change/",
        {
            "label": "a",
            "base_url": "https://8.8.8.8/v1",
            "model_names": "m",
            "priority": 0,
            "weight": 1,
            "enabled": "on",
            "provider_config": json.dumps(config),
        },
    )
    # the form again, with the error naming the key
    key = next(iter(config)) if "oauth" not in config else "oauth.token_url"
    assert page.status_code == 200 and f"provider_config {key}:" in page.content.decode()
    assert UpstreamAccount.objects.get(pk=account.pk).provider_config == {}


@pytest.mark.django_db
def test_codex_and_gitlab_services_check_provider_config_urls(settings: Any) -> None:
    from executors.codex.services import codex_account_save

    settings.PROXY_ALLOW_PRIVATE_UPSTREAMS = False
    with pytest.raises(ValidationError, match="auth_url"):
        codex_account_save(
            label="c",
            secret={},
            base_url="https://8.8.8.8/backend-api/codex",
            provider_config={"auth_url": "http://169.254.169.254"},
        )


def test_provider_config_urls_are_checked_again_where_used(settings: Any) -> None:
    """A row written before the check existed (or behind the services' back) is refused at use."""
    from executors.codex.config import codex_config
    from executors.gitlab.config import gateway_url, instance_url

    settings.PROXY_ALLOW_PRIVATE_UPSTREAMS = False
    with pytest.raises(ValidationError):
        gateway_url({"gateway_url": "http://127.0.0.1:6379"})
    with pytest.raises(ValidationError):
        instance_url({"instance_url": "http://192.168.1.1"})
    with pytest.raises(ValidationError):
        codex_config({"auth_url": "http://169.254.169.254/latest"})
    # defaults and public URLs pass
    assert gateway_url({}) == "https://cloud.gitlab.com/ai"
    assert instance_url({"instance_url": "https://8.8.8.8/"}) == "https://8.8.8.8"


# Public addresses as literals: the guard resolves host names, and this sandbox may not.
_CODEX = {"label": "c", "models": "gpt-5.5", "base_url": "https://1.1.1.1/backend-api/codex"}
_GITLAB = {"label": "g", "token": "glpat-x", "instance_url": "https://8.8.8.8", "gateway_url": "https://8.8.4.4"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("form_path", "data", "field"),
    [
        ("executors.codex.flows.DeviceConnectForm", {**_CODEX, "auth_url": "https://1.0.0.1"}, "base_url"),
        ("executors.codex.flows.DeviceConnectForm", {**_CODEX, "auth_url": "https://1.0.0.1"}, "auth_url"),
        ("executors.gitlab.flows.PatForm", _GITLAB, "instance_url"),
        ("executors.gitlab.flows.PatForm", _GITLAB, "gateway_url"),
    ],
)
def test_provider_add_forms_refuse_private_urls_on_the_field(
    settings: Any, form_path: str, data: dict[str, str], field: str
) -> None:
    # The admin's add-account forms run the SSRF guard on every URL they take, before any
    # wire call; the same data with a public address passes.
    from django.utils.module_loading import import_string

    settings.PROXY_ALLOW_PRIVATE_UPSTREAMS = False
    form_class = import_string(form_path)
    assert form_class(data=data).is_valid()
    form = form_class(data={**data, field: "http://169.254.169.254/latest"})
    assert not form.is_valid() and list(form.errors) == [field]
