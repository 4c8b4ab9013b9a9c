"""No secret in any log, error response or admin page, with real traffic including failures."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import NoReverseMatch, reverse

from accounts.models import Credential
from tests.executors.codex.conftest import import_account
from tests.fakes.base import Fault
from tests.support.proxy import seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _secrets() -> set[str]:
    """Every secret value stored for the test accounts (upstream keys, OAuth tokens)."""
    found: set[str] = set()
    for cred in Credential.objects.all():
        for name, value in cred.secret.items():
            if name in ("api_key", "access_token", "refresh_token", "id_token", "token") and value:
                found.add(str(value))
    return found


def _admin_pages() -> str:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(user)
    pages: list[str] = []
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        try:
            pages.append(client.get(reverse(f"admin:{info[0]}_{info[1]}_changelist")).content.decode())
        except NoReverseMatch:
            continue
        for obj in model_admin.get_queryset(_Req(user)).all()[:20]:
            try:
                r = client.get(reverse(f"admin:{info[0]}_{info[1]}_change", args=[obj.pk]))
            except NoReverseMatch:
                continue
            pages.append(r.content.decode())
    pages.append(client.get("/admin/").content.decode())
    return "\n".join(pages)


class _Req:
    def __init__(self, user: Any) -> None:
        self.user = user


async def test_no_secret_in_logs_responses_or_admin(
    live_proxy: Any, fake_openai: Any, codex_fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai, accounts=2)
    await sync_to_async(import_account)(codex_fake)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    responses: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        # ok, upstream 401 on both accounts, upstream 500, bad client keys, a stream
        for fault in (None, Fault.http(401).where(times=2), Fault.http(500).where(times=3), None):
            if fault is not None:
                fake_openai.faults.push(fault)
            r = await client.post(proxy.v1 + "/chat/completions", json=body, headers=proxy.headers())
            responses.append(r.text + str(r.headers))
        for bad in (proxy.key[:-1] + "x", proxy.key + "'", "sk-upstream-A"):
            r = await client.post(proxy.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {bad}"})
            responses.append(r.text)
        r = await client.post(proxy.v1 + "/chat/completions", json={**body, "stream": True}, headers=proxy.headers())
        responses.append(r.text)
        r = await client.post(proxy.v1 + "/messages", json={**body, "max_tokens": 5}, headers=proxy.headers())
        responses.append(r.text)
    await usage_rows(9)
    secrets = await sync_to_async(_secrets)()
    secrets.add(proxy.key)
    assert len(secrets) >= 5  # 2 upstream keys, codex access/refresh/id tokens, the client key
    pages = await sync_to_async(_admin_pages)()
    logs = caplog.text + "\n".join(str(rec.__dict__) for rec in caplog.records)
    for secret in secrets:
        for where, text in (("logs", logs), ("responses", "\n".join(responses)), ("admin", pages)):
            assert secret not in text, f"a secret ({secret[:6]}…) appears in {where}"
    assert "upstream attempt failed" in caplog.text  # the failures were logged, just not the secrets
