"""Codex backend failures → UpstreamError (codex.md §8.3, §9).

Quota is metered per (account, model family): a `usage_limit_reached` cools that family until
its `resets_at`; a 429 is never retried on the same account (the CLI does not either).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings

from accounts.models import AccountState
from executors.base import CooldownScope, UpstreamError

HTML_403_MESSAGE = (
    "the Codex backend refused the request with an HTML 403 (chatgpt.com WAF/Cloudflare). This usually means "
    "the request fingerprint no longer matches the official Codex CLI: check the configured client_version "
    "(CODEX_CLIENT_VERSION / provider_config) against the current CLI release, and the User-Agent"
)
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "usage_limit_reached": 429,
    "usage_not_included": 429,
}
# Request faults: the client's answer, no cooldown, no failover (§8.3).
_REQUEST_FAULTS = frozenset(
    {
        "previous_response_not_found",
        "context_length_exceeded",
        "invalid_encrypted_content",
        "cyber_policy",
        "invalid_prompt",
    }
)
_OVERLOAD = frozenset({"service_unavailable_error", "server_is_overloaded", "server_error", "overloaded"})


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _error_fields(obj: Any) -> tuple[dict[str, Any], str]:
    """(error object, message) from `{"error":{...}}`, `{"detail": "..."}` or an event."""
    if not isinstance(obj, Mapping):
        return {}, ""
    err = obj.get("error")
    if isinstance(err, Mapping):
        return dict(err), str(err.get("message") or "")
    if isinstance(obj.get("detail"), str):
        return {}, obj["detail"]
    if obj.get("type") == "error":  # a bare stream `error` event carries the fields at the top
        return {k: v for k, v in obj.items() if k != "type"}, str(obj.get("message") or "")
    return {}, str(obj.get("message") or "")


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def usage_limit_wait(err: Mapping[str, Any], headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until the family resets: `resets_at - now`, else `resets_in_seconds`, else Retry-After."""
    at = _num(err.get("resets_at"))
    if at is not None and at > now:
        return at - now
    after = _num(err.get("resets_in_seconds"))
    if after is not None and after > 0:
        return after
    retry = _num(headers.get("retry-after"))
    return retry if retry and retry > 0 else None


def classify(
    *,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    content_type: str = "",
    request_id: str = "",
    now: float | None = None,
) -> UpstreamError:
    now = time.time() if now is None else now
    default = float(settings.DEFAULT_COOLDOWN_SECONDS)
    if "text/html" in content_type or body.lstrip()[:1] == b"<":
        if status == 403:
            # Fingerprint mismatch or a Cloudflare challenge: short cooldown, loud message.
            return UpstreamError(
                status=403,
                message=HTML_403_MESSAGE,
                code="codex_fingerprint_rejected",
                retryable=True,
                cooldown=max(10.0, min(default, 60.0)),
                cooldown_scope=CooldownScope.ACCOUNT,
                request_id=request_id,
                client_status=502,
            )
        return UpstreamError(
            status=status,
            message=f"Codex backend answered HTTP {status} with an HTML page",
            code="upstream_error",
            retryable=True,
            cooldown=5.0,
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=503 if status in (503, 529) else 502,
        )
    obj = _parse(body)
    err, message = _error_fields(obj)
    etype = str(err.get("type") or "")
    code = str(err.get("code") or "")
    message = message or f"Codex backend answered HTTP {status}"
    return classify_error(
        status=status,
        etype=etype,
        code=code,
        message=message,
        err=err,
        headers=headers,
        request_id=request_id,
        now=now,
    )


def classify_error(
    *,
    status: int,
    etype: str,
    code: str,
    message: str,
    err: Mapping[str, Any],
    headers: Mapping[str, str],
    request_id: str = "",
    now: float | None = None,
) -> UpstreamError:
    now = time.time() if now is None else now
    default = float(settings.DEFAULT_COOLDOWN_SECONDS)
    kinds = {etype, code}

    if "usage_limit_reached" in kinds:
        wait = usage_limit_wait(err, headers, now)
        return UpstreamError(
            status=429,
            message=message,
            code="usage_limit_reached",
            error_type="rate_limit_error",
            retryable=True,
            cooldown=wait if wait is not None else default,
            cooldown_scope=CooldownScope.FAMILY,
            request_id=request_id,
            client_status=429,
        )
    if "usage_not_included" in kinds:
        return UpstreamError(
            status=429,
            message=message,
            code="usage_not_included",
            retryable=True,
            account_state=AccountState.NOT_ENTITLED,
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=502,
        )
    if "at capacity" in message.lower():
        # The model, not the account, is full: try elsewhere, no cooldown.
        return UpstreamError(
            status=status or 429,
            message=message,
            code="model_at_capacity",
            retryable=True,
            request_id=request_id,
            client_status=503,
        )
    if status == 429 or kinds & {"rate_limit_error", "rate_limit_exceeded"}:
        # A per-minute burst limit: fail over, short backoff, never the same account again now.
        retry = _num(headers.get("retry-after"))
        return UpstreamError(
            status=429,
            message=message,
            code=code or "rate_limit_exceeded",
            error_type="rate_limit_error",
            retryable=True,
            cooldown=retry if retry and retry > 0 else min(5.0, default),
            cooldown_scope=CooldownScope.FAMILY,
            request_id=request_id,
            client_status=429,
        )
    if status == 401:
        if "token_invalidated" in kinds:
            return UpstreamError(
                status=401,
                message="the ChatGPT session of this Codex account was terminated (token_invalidated)",
                code="codex_upstream_unavailable",
                retryable=True,
                account_state=AccountState.SESSION_TERMINATED,
                request_id=request_id,
                client_status=503,
            )
        # A stale access token: refresh once and retry once before anything else.
        return UpstreamError(
            status=401,
            message=message,
            code="upstream_auth_failed",
            retryable=True,
            refresh_credential=True,
            cooldown=default,
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=502,
        )
    if status == 403:
        return UpstreamError(
            status=403,
            message=message,
            code=code or "upstream_forbidden",
            retryable=True,
            cooldown=default,
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=502,
        )
    if status == 404 and not (kinds & {"model_not_found", "not_found_error"}):
        # A regional incident on /codex/responses, not a dead account: retry later, never disable.
        return UpstreamError(
            status=404,
            message=message,
            code=code or "upstream_not_found",
            retryable=True,
            cooldown=min(60.0, default),
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=502,
        )
    if "websocket_connection_limit_reached" in kinds:
        # The socket's 60-minute cap (§4.2): the executor replaces the socket first; reaching
        # here means the new one was refused too, which another account may not be.
        return UpstreamError(
            status=status or 400,
            message=message,
            code="websocket_connection_limit_reached",
            retryable=True,
            request_id=request_id,
            client_status=502,
        )
    if "routing_unsupported" in kinds:
        return UpstreamError(
            status=status or 400,
            message=f"{message} (this model needs the WebSocket transport, not implemented)",
            code="routing_unsupported",
            retryable=False,
            request_id=request_id,
            client_status=502,
        )
    if kinds & _REQUEST_FAULTS or (400 <= status < 500):
        return UpstreamError(
            status=status or 400,
            message=message,
            code=code or etype or "invalid_request",
            error_type=etype or None,
            retryable=False,
            request_id=request_id,
            client_status=status if 400 <= status < 500 else 400,
        )
    if kinds & _OVERLOAD or status >= 500 or status == 0:
        return UpstreamError(
            status=status or 503,
            message=message,
            code=code or etype or "upstream_overloaded",
            retryable=True,
            cooldown=5.0,
            cooldown_scope=CooldownScope.ACCOUNT,
            request_id=request_id,
            client_status=503 if status in (0, 503, 529) else 502,
        )
    return UpstreamError(
        status=status,
        message=message,
        code=code or "upstream_error",
        retryable=True,
        request_id=request_id,
        client_status=502,
    )


def stream_error(event: Mapping[str, Any], headers: Mapping[str, str], request_id: str = "") -> UpstreamError:
    """A terminal failure inside a 200 stream (`response.failed` or `error`), classified like HTTP (§9)."""
    if event.get("type") == "response.failed":
        response = event.get("response")
        err = dict(response.get("error") or {}) if isinstance(response, Mapping) else {}
    else:
        err, _ = _error_fields(event)
    etype = str(err.get("type") or "")
    code = str(err.get("code") or "")
    status = _num(err.get("status_code") or err.get("status") or event.get("status_code") or event.get("status"))
    if status is None:
        status = float(_TYPE_STATUS.get(etype) or _TYPE_STATUS.get(code) or (503 if {etype, code} & _OVERLOAD else 502))
    message = str(err.get("message") or "the Codex backend reported a failure")
    return classify_error(
        status=int(status), etype=etype, code=code, message=message, err=err, headers=headers, request_id=request_id
    )
