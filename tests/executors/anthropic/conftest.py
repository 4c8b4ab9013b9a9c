"""Fixtures for Anthropic API tests: one fake per session (reset per test), two accounts on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.anthropic import AnthropicApp
from tests.fakes.base import FakeServer

KEYS = ("sk-ant-api03-account-A-000000000000", "sk-ant-api03-account-B-000000000000")
MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="session")
def _anthropic_server() -> Iterator[FakeServer[AnthropicApp]]:
    server = FakeServer(AnthropicApp(keys=KEYS)).start()
    yield server
    server.stop()


@pytest.fixture
def anthropic(_anthropic_server: FakeServer[AnthropicApp]) -> Iterator[FakeServer[AnthropicApp]]:
    _anthropic_server.reset()
    _anthropic_server.app.keys = set(KEYS)
    yield _anthropic_server
    _anthropic_server.reset()
    _anthropic_server.app.keys = set(KEYS)


@dataclass
class Pool:
    url: str
    key: str
    fake: FakeServer[AnthropicApp]
    accounts: list[Any]

    def headers(self, **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}", **extra}

    def model_calls(self) -> list[Any]:
        return [r for r in self.fake.requests if r["path"] == "/v1/messages"]


@pytest.fixture
def pool(live_proxy: Any, anthropic: FakeServer[AnthropicApp]) -> Pool:
    """Two Anthropic accounts on the fake (A is tried first) and a developer key."""
    from accounts.services import client_key_create
    from executors.anthropic.services import account_add_anthropic

    accounts = [
        account_add_anthropic(
            label=f"anthropic-{name}", base_url=anthropic.url, api_key=key, model_names=[MODEL], priority=10 - i
        )
        for i, (name, key) in enumerate(zip("ab", KEYS, strict=True))
    ]
    _, key = client_key_create(name="dev")
    return Pool(live_proxy.url, key, anthropic, accounts)  # type: ignore[attr-defined]
