"""/metrics after real traffic through the proxy (live server + realistic fake upstream).

The registry is per process and shared by the whole test session, so every assertion is on
the difference between a scrape before and one after the traffic.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.fakes.base import Fault
from tests.observability.support import TOKEN, delta, scrape, total
from tests.support.proxy import ProxySetup, seed, usage_rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any, settings: Any) -> ProxySetup:
    settings.PROXY_METRICS_TOKEN = TOKEN
    from observability.metrics import known_models_reset

    known_models_reset()  # catalog names cached by an earlier test's accounts
    return seed(live_proxy.url, fake_openai)


def _chat(model: str = "gpt-4o-mini", stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
    if stream:
        body["stream"] = True
    return body


async def test_counts_histograms_and_labels_after_traffic(proxy: ProxySetup) -> None:
    # given a scrape before any traffic
    before = await scrape(proxy.url)
    # when 2 plain + 1 streamed requests succeed, one has a bad key, one names an unknown model
    async with httpx.AsyncClient(timeout=10) as client:
        url = proxy.v1 + "/chat/completions"
        for _ in range(2):
            assert (await client.post(url, json=_chat(), headers=proxy.headers())).status_code == 200
        assert (await client.post(url, json=_chat(stream=True), headers=proxy.headers())).status_code == 200
        bad_key = await client.post(url, json=_chat(), headers={"authorization": "Bearer sk-team-nope"})
        assert bad_key.status_code == 401
        unknown = await client.post(url, json=_chat(model="made-up-model-xyz"), headers=proxy.headers())
        assert unknown.status_code == 404
    await usage_rows(5)
    after = await scrape(proxy.url)

    # then requests are counted by surface / catalog model / account / outcome
    req = "llmproxy_requests_total"
    assert delta(before, after, req, surface="chat", model="gpt-4o-mini", account="acct-A", outcome="ok") == 3
    # an unknown model never becomes a label of its own
    assert delta(before, after, req, surface="chat", model="other", account="none", outcome="rejected") == 1
    assert delta(before, after, req, model="made-up-model-xyz") == 0
    # the bad key was refused before the body was read: no model at all
    assert delta(before, after, req, surface="chat", model="none", outcome="rejected") == 1
    # and the errors are counted by the code the client saw
    errors = "llmproxy_request_errors_total"
    assert delta(before, after, errors, surface="chat", outcome="rejected", code="invalid_api_key") == 1
    assert delta(before, after, errors, surface="chat", outcome="rejected", code="model_not_found") == 1
    # histograms: TTFB for the 3 answers, duration for all 5, attempts (1 each for the answers)
    assert delta(before, after, "llmproxy_ttfb_seconds_count", surface="chat") == 3
    assert delta(before, after, "llmproxy_ttfb_seconds_bucket", surface="chat", le="120.0") == 3
    assert delta(before, after, "llmproxy_request_duration_seconds_count", surface="chat") == 5
    assert delta(before, after, "llmproxy_request_duration_seconds_count", surface="chat", outcome="ok") == 3
    assert delta(before, after, "llmproxy_request_attempts_count", surface="chat") == 5
    assert delta(before, after, "llmproxy_request_attempts_sum", surface="chat") == 3
    assert delta(before, after, "llmproxy_request_attempts_bucket", surface="chat", le="0.0") == 2
    # tokens as recorded
    assert delta(before, after, "llmproxy_tokens_total", model="gpt-4o-mini", account="acct-A", kind="output") > 0
    # scrape-time state was read
    assert total(after, "llmproxy_state_scrape_ok") == 1
    assert total(after, "llmproxy_account_info", account="acct-A", provider="openai_compat", state="active") == 1


async def test_cooldown_gauge_and_upstream_error_after_429(proxy: ProxySetup) -> None:
    before = await scrape(proxy.url)
    assert total(before, "llmproxy_cooldown_remaining_seconds", account="acct-A") == 0
    # given the only account answers 429 with Retry-After: 30
    proxy.fake.faults.push(Fault.http(429, headers={"retry-after": "30"}))
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())
    assert r.status_code == 429
    await usage_rows(1)
    after = await scrape(proxy.url)
    # then a cooldown gauge for that account appears, with ~30 s left
    gauges = {
        dict(ls)["scope"]: v
        for (n, ls), v in after.items()
        if n == "llmproxy_cooldown_remaining_seconds" and dict(ls)["account"] == "acct-A"
    }
    assert gauges, "no cooldown gauge after a 429"
    assert all(20 < v <= 30 for v in gauges.values()), gauges
    # and the failed attempt is counted as an upstream error of that account
    assert delta(before, after, "llmproxy_upstream_errors_total", account="acct-A") == 1
    assert delta(before, after, "llmproxy_request_attempts_sum", surface="chat") == 1


async def test_quota_gauges_and_buffer_depth_read_at_scrape_time(proxy: ProxySetup, store: Any) -> None:
    import time

    from state.quota import quota_snapshot_set

    account_id = proxy.accounts[0].id
    await quota_snapshot_set(
        store, account_id=account_id, family="codex", used_percent=42.5, resets_at=time.time() + 600, window_minutes=300
    )
    # one request leaves one record in the buffer until a flush
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.post(proxy.v1 + "/chat/completions", json=_chat(), headers=proxy.headers())).is_success
    samples = await scrape(proxy.url)
    assert total(samples, "llmproxy_usage_buffer_depth") == 1
    labels = {"account": "acct-A", "family": "codex", "window": "primary"}
    assert total(samples, "llmproxy_quota_used_percent", **labels) == 42.5
    assert 500 < total(samples, "llmproxy_quota_resets_in_seconds", **labels) <= 600
    await usage_rows(1)
    assert total(await scrape(proxy.url), "llmproxy_usage_buffer_depth") == 0


async def test_metrics_endpoint_token_protection(live_proxy: Any, settings: Any) -> None:
    url = live_proxy.url + "/metrics"
    async with httpx.AsyncClient(timeout=10) as client:
        # unset token: the endpoint does not exist
        settings.PROXY_METRICS_TOKEN = ""
        assert (await client.get(url)).status_code == 404
        assert (await client.get(url, headers={"authorization": f"Bearer {TOKEN}"})).status_code == 404
        settings.PROXY_METRICS_TOKEN = TOKEN
        # missing or wrong credentials
        missing = await client.get(url)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get(url, headers={"authorization": "Bearer wrong"})).status_code == 401
        assert (await client.get(url, headers={"authorization": f"Basic {TOKEN}"})).status_code == 401
        # the right one
        ok = await client.get(url, headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain")
        assert "llmproxy_usage_buffer_depth" in ok.text


async def test_x_request_id_on_every_api_response_equals_usage_record(proxy: ProxySetup) -> None:
    url = proxy.v1 + "/chat/completions"
    async with httpx.AsyncClient(timeout=10) as client:
        plain = await client.post(url, json=_chat(), headers=proxy.headers())
        streamed = await client.post(url, json=_chat(stream=True), headers=proxy.headers())
        refused = await client.post(url, json=_chat(), headers={"authorization": "Bearer sk-team-nope"})
        models = await client.get(proxy.v1 + "/models", headers=proxy.headers())
        no_route = await client.get(proxy.v1 + "/nowhere", headers=proxy.headers())
    ids = [r.headers.get("x-request-id", "") for r in (plain, streamed, refused, models, no_route)]
    assert all(UUID.match(i) for i in ids), ids
    assert len(set(ids)) == 5
    # the three proxied requests are recorded under the id their client was given
    rows = await usage_rows(3)
    assert sorted(str(r.request_id) for r in rows) == sorted(ids[:3])


async def test_client_request_id_is_echoed_only_when_sane(proxy: ProxySetup) -> None:
    url = proxy.v1 + "/chat/completions"
    async with httpx.AsyncClient(timeout=10) as client:
        sane = await client.post(url, json=_chat(), headers=proxy.headers(**{"x-request-id": "trace-1.A_b"}))
        again = await client.post(url, json=_chat(), headers=proxy.headers(**{"x-request-id": "trace-1.A_b"}))
        insane = await client.post(url, json=_chat(), headers=proxy.headers(**{"x-request-id": "x" * 65}))
        spaces = await client.post(url, json=_chat(), headers=proxy.headers(**{"x-request-id": "a b<script>"}))
    # the client's id comes back as its correlation id; the proxy's own id stays unique
    assert sane.headers["x-client-request-id"] == "trace-1.A_b"
    assert UUID.match(sane.headers["x-request-id"])
    assert sane.headers["x-request-id"] != again.headers["x-request-id"]
    assert "x-client-request-id" not in insane.headers and "x-client-request-id" not in spaces.headers
    # a reused client id does not cost a usage record
    assert len(await usage_rows(4)) == 4
