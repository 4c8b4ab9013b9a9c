from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def test_healthz_and_readyz(live_proxy: Any) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        h = await client.get(live_proxy.url + "/healthz")
        r = await client.get(live_proxy.url + "/readyz")
        head = await client.head(live_proxy.url + "/")
        unknown = await client.post(live_proxy.url + "/v1/nope", json={})
    assert h.status_code == 200 and h.json() == {"status": "ok"}
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "state_store": "ok", "broker": "ok"}
    assert head.status_code == 200
    assert unknown.status_code == 404 and "error" in unknown.json()


async def test_websocket_upgrade_elsewhere_is_426(live_proxy: Any) -> None:
    # a real WebSocket handshake (the test server has a WebSocket library): only /v1/responses
    # serves WebSockets (tests/routing/test_websocket_live.py); elsewhere 426 tells the client
    # to use HTTP at once
    import base64
    import os

    upgrade = {
        "connection": "Upgrade",
        "upgrade": "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": base64.b64encode(os.urandom(16)).decode(),
    }
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(live_proxy.url + "/v1/chat/completions", headers=upgrade)
        no_key = await client.get(live_proxy.url + "/v1/responses", headers=upgrade)
        plain = await client.get(live_proxy.url + "/v1/responses")
    assert r.status_code == 426
    assert r.json()["error"]["code"] == "websocket_not_supported"
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    assert plain.status_code == 405 and "error" in plain.json()


async def test_upgrade_request_seen_as_plain_http_is_426_too() -> None:
    # A server without a WebSocket library passes the upgrade to the app as a plain GET.
    from django.test import AsyncClient

    r = await AsyncClient().get("/v1/responses", headers={"upgrade": "websocket", "connection": "Upgrade"})
    assert r.status_code == 426


async def test_no_api_docs_page_and_no_third_party_script(live_proxy: Any) -> None:
    """Issue 17 (minor): /v1/docs loaded Swagger from a CDN (broken offline, a third-party
    script on the proxy's origin) without authentication. Removed: the bodies are the OpenAI
    and Anthropic formats; both paths are 404 in the OpenAI error format."""
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ("/v1/docs", "/v1/openapi.json"):
            r = await client.get(live_proxy.url + path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
            assert b"cdn.jsdelivr.net" not in r.content
