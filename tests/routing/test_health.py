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
