"""Issue 17 F10: snapshot_save updated or created by response_id alone, so a second key's
answer with a colliding id overwrote the first key's snapshot and broke its continuation.
Snapshots are now keyed by (key, response id)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accounts.services import client_key_create
from routing.models import ResponseSnapshot
from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, completion_body, seed

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


def test_another_keys_colliding_id_does_not_overwrite_a_snapshot(proxy: ProxySetup) -> None:
    _, other_key = client_key_create(name="other", owner_label="other@example.com")
    alice, bob = proxy.headers(), {"authorization": f"Bearer {other_key}"}
    # The upstream chooses the id; two answers with the same one collide in the proxy.
    same = "chatcmpl-same-id"
    proxy.fake.faults.push(
        Fault.http(200, completion_body(content="alice's answer", completion_id=same)),
        Fault.http(200, completion_body(content="bob's", completion_id=same)),
    )
    with httpx.Client(timeout=15) as client:
        first = client.post(
            proxy.v1 + "/responses", json={"model": "gpt-4o-mini", "input": "alice asks"}, headers=alice
        )
        second = client.post(proxy.v1 + "/responses", json={"model": "gpt-4o-mini", "input": "bob asks"}, headers=bob)
        assert first.status_code == second.status_code == 200
        rid = first.json()["id"]
        assert second.json()["id"] == rid  # the collision this test is about
        # alice continues her own conversation
        follow = client.post(
            proxy.v1 + "/responses",
            json={"model": "gpt-4o-mini", "input": "and then?", "previous_response_id": rid},
            headers=alice,
        )
    assert follow.status_code == 200, follow.text
    sent = proxy.fake.requests[-1]["json"]["messages"]
    texts = [m.get("content") for m in sent]
    assert "alice asks" in str(texts) and "alice's answer" in str(texts) and "bob" not in str(texts)
    assert ResponseSnapshot.objects.filter(response_id=rid).count() == 2
