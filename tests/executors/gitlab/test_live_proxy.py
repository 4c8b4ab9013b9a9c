"""End to end: clients of all three dialects through the real proxy to a GitLab Duo account."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accounts.services import client_key_create
from executors.gitlab.services import gitlab_pat_add
from tests.executors.gitlab.conftest import PAT
from tests.fakes.gitlab import GitLabFakes

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def key(live_proxy: Any, gitlab: GitLabFakes) -> str:
    gitlab_pat_add(label="duo", token=PAT, instance_url=gitlab.instance_url, gateway_url=gitlab.gateway_url)
    _, raw = client_key_create(name="dev")
    return raw


def _events(raw: bytes) -> list[str]:
    return [line[7:] for line in raw.decode().split("\n") if line.startswith("event: ")]


async def test_messages_stream_through_proxy(live_proxy: Any, key: str, gitlab: GitLabFakes) -> None:
    body = {"model": "gitlab-duo", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.post(
            live_proxy.url + "/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}
        )
    assert r.status_code == 200, r.text
    names = _events(r.content)
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert gitlab.gateway.requests[-1]["json"]["model"] == "claude-sonnet-4-6"


async def test_chat_on_claude_is_translated(live_proxy: Any, key: str, gitlab: GitLabFakes) -> None:
    body = {"model": "claude-haiku-4-5-20251001", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.post(live_proxy.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: hi"


async def test_responses_stream_on_gpt(live_proxy: Any, key: str, gitlab: GitLabFakes) -> None:
    body = {"model": "gitlab-duo-gpt", "input": "hi", "stream": True}
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.post(live_proxy.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    names = _events(r.content)
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert gitlab.gateway.requests[-1]["path"].endswith("/v1/responses")
