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


def import_account(
    fake: FakeServer[CodexFakeApp],
    *,
    label: str = "codex-a",
    provider_config_extra: dict[str, Any] | None = None,
    **auth: Any,
) -> Any:
    """A Codex account whose tokens the fake issued, pointing at the fake. Tests add several
    accounts signed in to the fake's one ChatGPT account: the duplicate is confirmed."""
    from executors.codex.services import codex_import_auth_json

    return codex_import_auth_json(
        data=fake.app.auth_json(**auth),
        label=label,
        base_url=fake.url + "/backend-api/codex",
        model_names=["gpt-5.5", "gpt-5.4"],
        provider_config={"auth_url": fake.url, **(provider_config_extra or {})},
        allow_duplicate=True,
    )


def account_info(account_id: int) -> Any:
    from accounts.models import UpstreamAccount
    from accounts.selectors import account_info_from_row

    return account_info_from_row(UpstreamAccount.objects.select_related("credential").get(id=account_id))
