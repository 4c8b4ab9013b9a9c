"""Fixtures for the reliability tests: a seeded proxy and a state store that can be cut."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from django.conf import settings

from tests.executors.codex.conftest import _codex_server, codex_fake  # noqa: F401  (shared fixtures)
from tests.reliability.tcp_proxy import CuttableProxy
from tests.support.proxy import ProxySetup, seed


def closed_port() -> int:
    """A port nothing listens on (bound then released): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def real_redis_url() -> str:
    import os

    return settings.REDIS_URL or os.environ.get("TEST_REDIS_URL", "")


def use_store_url(url: str, django_settings: Any) -> None:
    """Point this process (test loop and live server loop alike) at another Redis URL."""
    from statestore import reset_stores

    django_settings.REDIS_URL = url
    reset_stores()  # per-loop clients are rebuilt from the new URL on next use


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai, accounts=2)


@pytest.fixture
def redis_cut(settings: Any) -> Iterator[CuttableProxy]:
    url = real_redis_url()
    if not url:
        pytest.skip("no Redis: the cut/restore test runs in CI (CI=true bin/test)")
    parsed = urlparse(url)
    tcp = CuttableProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379).start()
    path = parsed.path or "/0"
    use_store_url(f"redis://127.0.0.1:{tcp.port}{path}", settings)
    yield tcp
    tcp.stop()
