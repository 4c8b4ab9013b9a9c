"""Client keys: verified by hash lookup only (key text never reaches SQL), and the per-key
model allow-list holds on every surface, /v1/models and count_tokens included."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db.backends.utils import CursorWrapper

from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HOSTILE_KEYS = [
    "' OR '1'='1",
    "sk-team-x'; DROP TABLE accounts_clientkey; --",
    '" OR ""="',
    "sk-team-%' OR key_hash LIKE '%",
    "\\x00\\x27",
    "sk-team-" + "A" * 199,
    "1 UNION SELECT key_hash FROM accounts_clientkey",
]
UNICODE_KEYS = ["sk-team-ключ", "sk-team-🔑", "\uff53\uff4b-team-fullwidth", "sk-team-\u202eevil"]


@pytest.fixture
def sql_log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement and its parameters, from every thread (the live server's too)."""
    seen: list[str] = []
    lock = threading.Lock()
    for name in ("execute", "executemany"):
        original = getattr(CursorWrapper, name)

        def wrapped(self: Any, sql: Any, params: Any = None, *a: Any, _o: Any = original, **k: Any) -> Any:
            with lock:
                seen.append(f"{sql} {params!r}")
            return _o(self, sql, params, *a, **k)

        monkeypatch.setattr(CursorWrapper, name, wrapped)
    return seen


async def test_hostile_and_unicode_keys_never_reach_sql(live_proxy: Any, fake_openai: Any, sql_log: list[str]) -> None:
    proxy = await sync_to_async(seed)(live_proxy.url, fake_openai)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=10) as client:
        for key in HOSTILE_KEYS:
            for header in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
                r = await client.post(proxy.v1 + "/chat/completions", json=body, headers=header)
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        for key in UNICODE_KEYS:
            # httpx refuses non-latin-1 header text; send the UTF-8 bytes like a raw client would
            r = await client.post(
                proxy.v1 + "/chat/completions", json=body, headers=[(b"authorization", b"Bearer " + key.encode())]
            )
            assert r.status_code == 401 and r.json()["error"]["type"]
    await usage_rows(len(HOSTILE_KEYS) * 2 + len(UNICODE_KEYS))
    text = "\n".join(sql_log)
    for key in HOSTILE_KEYS + UNICODE_KEYS:
        assert key not in text and key.encode().hex() not in text
    # the lookups that did happen used the SHA-256 digest as a bound parameter
    digest = hashlib.sha256(HOSTILE_KEYS[0].encode()).hexdigest()
    lookups = [line for line in sql_log if digest in line]
    assert lookups and all(("%s" in line or "?" in line) and f"'{digest}'" in line for line in lookups)
    # keys over the length cap or non-ASCII are refused before any hashing or lookup
    for key in [HOSTILE_KEYS[5] + "B", *UNICODE_KEYS]:
        assert hashlib.sha256(key.encode()).hexdigest() not in text


async def test_allow_list_on_every_surface(live_proxy: Any, fake_openai: Any) -> None:
    proxy: ProxySetup = await sync_to_async(seed)(live_proxy.url, fake_openai, allowed_models=("gpt-4.1",))
    denied = "gpt-4o-mini"
    chat = {"model": denied, "messages": [{"role": "user", "content": "hi"}]}
    msgs = {"model": denied, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=10) as client:
        h = proxy.headers()
        a = proxy.headers(**{"anthropic-version": "2023-06-01"})
        results = {
            "chat": await client.post(proxy.v1 + "/chat/completions", json=chat, headers=h),
            "chat-stream": await client.post(proxy.v1 + "/chat/completions", json={**chat, "stream": True}, headers=h),
            "responses": await client.post(proxy.v1 + "/responses", json={"model": denied, "input": "hi"}, headers=h),
            "messages": await client.post(proxy.v1 + "/messages", json=msgs, headers=a),
            "count_tokens": await client.post(proxy.v1 + "/messages/count_tokens", json=msgs, headers=a),
        }
        models = await client.get(proxy.v1 + "/models", headers=h)
        models_anthropic = await client.get(proxy.v1 + "/models", headers=a)
        one_model = await client.get(proxy.v1 + f"/models/{denied}", headers=h)
    for name, r in results.items():
        assert r.status_code == 403, (name, r.status_code, r.text[:200])
        if name in ("messages", "count_tokens"):
            assert r.json()["type"] == "error" and r.json()["error"]["type"] == "permission_error"
        else:
            assert r.json()["error"]["code"] == "permission_denied"
    assert [m["id"] for m in models.json()["data"]] == ["gpt-4.1"]
    assert [m["id"] for m in models_anthropic.json()["data"]] == ["gpt-4.1"]
    assert one_model.status_code in (403, 404)
    assert not fake_openai.requests or all(
        r["json"].get("model") != denied for r in fake_openai.requests if r.get("json")
    )
    await usage_rows(len(results))
