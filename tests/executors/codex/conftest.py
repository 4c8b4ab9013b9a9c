"""Fixtures for Codex tests: one fake ChatGPT auth server + Codex backend per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.base import FakeServer
from tests.fakes.codex import CodexFakeApp


@pytest.fixture(scope="session")
def _codex_server() -> Iterator[FakeServer[CodexFakeApp]]:
    server = FakeServer(CodexFakeApp())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def codex_fake(_codex_server: FakeServer[CodexFakeApp]) -> Iterator[FakeServer[CodexFakeApp]]:
    _codex_server.reset()
    yield _codex_server
    _codex_server.reset()


def import_account(fake: FakeServer[CodexFakeApp], *, label: str = "codex-a", **auth: Any) -> Any:
    """A Codex account whose tokens the fake issued, pointing at the fake."""
    from executors.codex.services import codex_import_auth_json

    return codex_import_auth_json(
        data=fake.app.auth_json(**auth),
        label=label,
        base_url=fake.url + "/backend-api/codex",
        model_names=["gpt-5.5", "gpt-5.4"],
        provider_config={"auth_url": fake.url},
    )


def account_info(account_id: int) -> Any:
    from accounts.models import UpstreamAccount
    from accounts.selectors import AccountInfo

    row = UpstreamAccount.objects.select_related("credential").get(id=account_id)
    return AccountInfo(
        id=row.id,
        label=row.label,
        provider=row.provider,
        base_url=row.base_url,
        priority=row.priority,
        weight=row.weight,
        model_names=tuple(row.model_names),
        state=row.state,
        secret=dict(row.credential.secret),
    )
