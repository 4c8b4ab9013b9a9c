"""Helpers shared by executors to classify HTTP failures consistently."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import httpx

from executors.base import CooldownScope, UpstreamError

# What an upstream failure looks like to the client when it is the final answer.
_CLIENT_FAULT = {400, 409, 413, 422}
# "This account does not have that model": try others, and skip this (account, model) for a while.
MODEL_UNSUPPORTED_COOLDOWN = 3600.0


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Retry-After (seconds or HTTP date) or retry-after-ms; None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def classify_http_error(
    *, status: int, headers: httpx.Headers, message: str, code: str | None, default_cooldown: float, request_id: str
) -> UpstreamError:
    if status == 429:
        wait = retry_after_seconds(headers)
        return UpstreamError(
            status=status,
            message=message,
            code=code or "upstream_rate_limited",
            retryable=True,
            cooldown=wait,
            backoff=wait is None,  # no hint: escalating backoff for this (account, family)
            request_id=request_id,
            client_status=429,
        )
    if status == 401:
        # Our credential is the problem, not the client's request: refresh once, then let
        # another account serve it; a credential that stays rejected needs a human.
        return UpstreamError(
            status=status,
            message=message,
            code=code or "upstream_auth_failed",
            retryable=True,
            refresh_credential=True,
            account_state="auth_failed",
            request_id=request_id,
            client_status=502,
        )
    if status == 403:
        return UpstreamError(
            status=status,
            message=message,
            code=code or "upstream_forbidden",
            retryable=True,
            cooldown=default_cooldown,
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=502,
        )
    if status >= 500:
        wait = retry_after_seconds(headers)
        return UpstreamError(
            status=status,
            message=message,
            code=code or "upstream_error",
            retryable=True,
            cooldown=wait if wait is not None else min(5.0, default_cooldown),
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=503 if status in (503, 529) else 502,
        )
    if status == 404:
        return UpstreamError(
            status=status,
            message=message,
            code=code or "model_not_found",
            retryable=True,
            cooldown=MODEL_UNSUPPORTED_COOLDOWN,
            cooldown_scope=CooldownScope.MODEL,
            request_id=request_id,
        )
    if status in _CLIENT_FAULT:
        return UpstreamError(
            status=status, message=message, code=code or "invalid_request", retryable=False, request_id=request_id
        )
    return UpstreamError(
        status=status,
        message=message,
        code=code or "upstream_error",
        retryable=True,
        request_id=request_id,
        client_status=502,
    )


def classify_transport_error(exc: httpx.HTTPError) -> UpstreamError:
    timeout = isinstance(exc, httpx.TimeoutException)
    return UpstreamError(
        cooldown_scope=CooldownScope.ACCOUNT,
        status=504 if timeout else 502,
        message=f"upstream {'timed out' if timeout else 'connection failed'} ({type(exc).__name__})",
        code="upstream_timeout" if timeout else "upstream_unreachable",
        retryable=True,
        cooldown=5.0,
    )
