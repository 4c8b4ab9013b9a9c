"""Codex's part of the accounts board: "Refresh credential now" forces a token rotation."""

from __future__ import annotations

from datetime import UTC, datetime

from accounts.models import UpstreamAccount
from accounts.providers import ProbeResult
from executors.codex.services import CodexRefreshError, codex_token_refresh_sync


def board_refresh(account: UpstreamAccount) -> ProbeResult:
    """Rotate the ChatGPT tokens now (force). The executor's refresh only rotates a token it
    believes stale, and "refresh credential now" should prove the refresh token still works.
    Same single-flight service as Celery and the request path, so it cannot race them."""
    try:
        outcome = codex_token_refresh_sync(account_id=account.pk, force=True)
    except CodexRefreshError as exc:
        # Terminal: the service already marked the account auth_failed; say what to do.
        hint = " — sign in again (Add account → OpenAI Codex)" if exc.terminal else ""
        return ProbeResult(False, f"refresh failed: {exc}{hint}", upstream_text=exc.code)
    expires = outcome.secret.get("expires_at")
    until = (
        datetime.fromtimestamp(expires, tz=UTC).strftime(" (access token valid until %Y-%m-%d %H:%M UTC)")
        if isinstance(expires, int | float)
        else ""
    )
    return ProbeResult(True, f"ChatGPT tokens refreshed{until}")
