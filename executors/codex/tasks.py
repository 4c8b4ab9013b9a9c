"""Celery tasks for Codex accounts: thin wrappers around services (autodiscovered)."""

from __future__ import annotations

from celery import shared_task

from executors.codex.services import codex_accounts_refresh_due


@shared_task(name="executors.codex.tasks.codex_refresh_due_task", ignore_result=True)
def codex_refresh_due_task() -> dict[int, str]:
    # Refresh-ahead keeps the request path from ever waiting on the auth server; the
    # service is single-flight per account, so overlapping beats are harmless.
    return codex_accounts_refresh_due()
