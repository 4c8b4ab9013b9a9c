"""Celery tasks for GitLab Duo accounts (autodiscovered). Thin: they call services."""

from __future__ import annotations

from celery import shared_task

from executors.gitlab.grants import AHEAD_WINDOW
from executors.gitlab.services import gitlab_tokens_refresh_due
from statestore.factory import call_sync


@shared_task(ignore_result=True)
def gitlab_tokens_refresh_task(within: float = AHEAD_WINDOW) -> dict[str, int]:
    """Mint gateway tokens that expire within `within` seconds (default 10 min), so requests
    find a warm token; runs every 2 min from beat (at most one mint per account per expiry)."""
    return call_sync(lambda store: gitlab_tokens_refresh_due(store=store, within=within))
