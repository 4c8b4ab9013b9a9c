"""Fixtures for GitLab Duo tests: one fake instance + gateway per session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gitlab import GitLabFakes, serve

CLIENT_ID = "proxy-app"
REDIRECT = "http://localhost:17171/auth/callback"
PAT = "glpat-duo-user-token-0000000000"


@pytest.fixture(scope="session")
def _gitlab_servers() -> Iterator[GitLabFakes]:
    fakes = serve(responses_only=("gpt-5.6-sol",))
    yield fakes
    fakes.stop()


@pytest.fixture
def gitlab(_gitlab_servers: GitLabFakes) -> Iterator[GitLabFakes]:
    """The fakes, reset, with an OAuth app and a Duo user's PAT registered."""
    from executors.gitlab.grants import gitlab_grant_cache_clear

    _gitlab_servers.reset()
    _gitlab_servers.world.add_app(CLIENT_ID, redirect_uris=[REDIRECT])
    _gitlab_servers.world.add_pat(PAT)
    gitlab_grant_cache_clear()
    yield _gitlab_servers
    gitlab_grant_cache_clear()
    _gitlab_servers.reset()
