"""Shared fixtures. Backends: PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set (always in
CI, where a missing service fails the run instead of skipping), else SQLite and the
in-process store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from django.conf import settings
from hypothesis import settings as hypothesis_settings

IN_CI = os.environ.get("CI", "").lower() == "true"

# CI must be reproducible: the same examples on every run (local runs keep exploring).
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile("ci" if IN_CI else "dev")


def pytest_report_header(config: pytest.Config) -> list[str]:
    db = settings.DATABASES["default"]
    return [
        f"proxy backends: database={db['ENGINE'].rsplit('.', 1)[-1]} ({db.get('HOST') or db.get('NAME')}), "
        f"state store={'redis ' + settings.REDIS_URL if settings.REDIS_URL else 'in-process'}, "
        f"redis tests={'on' if _redis_url() else 'off'}, CI={IN_CI}"
    ]


def _redis_url() -> str:
    return settings.REDIS_URL or os.environ.get("TEST_REDIS_URL", "")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not IN_CI:
        return
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(f"CI=true requires PostgreSQL (DATABASE_URL); got {engine}")
    if not settings.REDIS_URL:
        raise pytest.UsageError("CI=true requires Redis (REDIS_URL)")
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise pytest.UsageError(f"CI=true but Redis at {settings.REDIS_URL} is unreachable: {exc}") from exc


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Each test starts with empty caches and an empty in-process store."""
    from accounts.selectors import caches_clear
    from pricing.selectors import price_book_clear
    from statestore import reset_stores

    caches_clear()
    price_book_clear()
    reset_stores()
    _redis_flush_prefix()
    yield
    caches_clear()


def _redis_flush_prefix() -> None:
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=settings.STATE_KEY_PREFIX + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def store() -> AsyncIterator[object]:
    """The configured store, emptied of this run's keys."""
    from statestore import get_store

    s = get_store()
    if s.shared:
        await s.flush_prefix()  # type: ignore[attr-defined]
    yield s
    if s.shared:
        await s.flush_prefix()  # type: ignore[attr-defined]
        await s.aclose()


# --------------------------------------------------------------------------- live servers


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[object]:
    from tests.fakes.base import FakeServer
    from tests.fakes.openai_compat import OpenAICompatApp

    server = FakeServer(OpenAICompatApp(keys=("sk-upstream-A", "sk-upstream-B"), models=("gpt-4o-mini", "gpt-4.1")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_openai_server: object) -> Iterator[object]:
    """The session's OpenAI-compatible fake, reset to defaults for this test."""
    # reset() also restores every setting the previous test changed.
    fake_openai_server.reset()  # type: ignore[attr-defined]
    yield fake_openai_server
    fake_openai_server.reset()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def _live_proxy_server(django_db_setup: None, django_db_blocker: object) -> Iterator[object]:
    from proxy_project.asgi import application
    from tests.support.live import LiveASGIServer

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        server = LiveASGIServer(application).start()
    yield server
    server.stop()


@pytest.fixture
def live_proxy(_live_proxy_server: object) -> Iterator[object]:
    """The real proxy ASGI app under uvicorn on 127.0.0.1 (lifespan off: tests flush usage).

    Teardown waits until every request finished, so no record leaks into the next test.
    """
    yield _live_proxy_server
    assert _live_proxy_server.wait_idle(), "a proxied request never finished"  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """Before the test database is dropped, end connections other threads left open (live
    server threads, executor threads), so PostgreSQL lets the drop happen."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
