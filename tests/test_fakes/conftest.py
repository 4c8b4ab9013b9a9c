"""Fixtures for the tests of the fake upstreams themselves."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.base import FakeServer
from tests.fakes.openai_compat import ModelSpec, OpenAICompatApp

KEY = "sk-upstream-test"


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Override the root autouse fixture: the fakes touch no Django state, so their tests
    also run without Django (`pytest tests/test_fakes -p no:django`)."""


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeServer[OpenAICompatApp]]:
    app = OpenAICompatApp(keys=[KEY], models=["gpt-4o-mini", "gpt-4.1", ModelSpec("gpt-5.5", responses_only=True)])
    with FakeServer(app) as server:
        yield server


@pytest.fixture
def fake(_openai_server: FakeServer[OpenAICompatApp]) -> Iterator[FakeServer[OpenAICompatApp]]:
    """One shared server, reset (control plane and settings) around every test."""
    _openai_server.reset()
    yield _openai_server
    _openai_server.reset()


@pytest.fixture
def api_key() -> str:
    return KEY


@pytest.fixture
def client(fake: FakeServer[OpenAICompatApp]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers={"authorization": f"Bearer {KEY}"}, timeout=10) as c:
        yield c
