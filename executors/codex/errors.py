"""What the Codex backend's failures mean, as tables (docs/protocols/codex.md, "Errors").

Quota is metered per (account, model family): a `usage_limit_reached` cools that family until
its `resets_at`; a 429 is never retried on the same account (the CLI does not either).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from accounts.models import AccountState
from executors.base import CooldownScope, UpstreamError
from executors.errors import (
    CATCH_ALL,
    FORBIDDEN,
    Rule,
    Signal,
    all_of,
    any_of,
    anything,
    default_cooldown,
    gateway_status,
    kind,
    rest_account,
    retry_after,
    seconds,
    status,
    text,
)
from executors.errors import classify as classify_table

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
# Request faults: the client's answer, no cooldown, no failover (docs/protocols/codex.md#errors).
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


def _limit_wait(s: Signal) -> float:
    wait = usage_limit_wait(s.detail, s.headers, s.now)
    return wait if wait is not None else default_cooldown()


def _request_fault(s: Signal) -> bool:
    return bool(s.kinds & _REQUEST_FAULTS) or 400 <= s.status < 500


def _overload(s: Signal) -> bool:
    return bool(s.kinds & _OVERLOAD) or s.status >= 500 or s.status == 0


# What the Codex backend's failures mean (docs/protocols/codex.md, "Errors"); first match wins.
TABLE: tuple[Rule, ...] = (
    # Quota is metered per (account, model family): cool that family until its reset.
    Rule(
        kind("usage_limit_reached"),
        code="usage_limit_reached",
        as_status=429,
        error_type="rate_limit_error",
        cooldown=_limit_wait,
        client_status=429,
    ),
    Rule(
        kind("usage_not_included"),
        code="usage_not_included",
        as_status=429,
        account_state=AccountState.NOT_ENTITLED,
        scope=CooldownScope.ACCOUNT,
        client_status=502,
    ),
    # The model, not the account, is full: try elsewhere, no cooldown.
    Rule(text("at capacity"), code="model_at_capacity", client_status=503),
    # A per-minute burst limit: fail over, short backoff, never the same account again now.
    Rule(
        any_of(status(429), kind("rate_limit_error", "rate_limit_exceeded")),
        fallback_code="rate_limit_exceeded",
        as_status=429,
        error_type="rate_limit_error",
        cooldown=retry_after(lambda s: min(5.0, default_cooldown())),
        client_status=429,
    ),
    Rule(
        all_of(status(401), kind("token_invalidated")),
        code="codex_upstream_unavailable",
        account_state=AccountState.SESSION_TERMINATED,
        client_status=503,
        message=lambda s: "the ChatGPT session of this Codex account was terminated (token_invalidated)",
    ),
    # A stale access token: dispatch refreshes once and retries once before anything else.
    rest_account(status(401), seconds(default_cooldown), code="upstream_auth_failed", refresh=True),
    FORBIDDEN,
    # The backend does not know the model: another account may; rest (account, model) briefly.
    Rule(
        all_of(status(404), kind("model_not_found", "not_found_error")),
        code="model_not_found",
        scope=CooldownScope.MODEL,
        backoff=True,
    ),
    # Any other 404 is a regional incident on /codex/responses, not a dead account: retry
    # later, never disable.
    Rule(
        status(404),
        fallback_code="upstream_not_found",
        cooldown=seconds(lambda: min(60.0, default_cooldown())),
        scope=CooldownScope.ACCOUNT,
        client_status=502,
    ),
    # The socket's 60-minute cap (docs/protocols/codex.md#transport-http-and-websocket): the
    # executor replaces the socket first; reaching here means the new one was refused too,
    # which another account may not be.
    Rule(kind("websocket_connection_limit_reached"), code="websocket_connection_limit_reached", client_status=502),
    Rule(
        kind("routing_unsupported"),
        code="routing_unsupported",
        retryable=False,
        client_status=502,
        message=lambda s: f"{s.message} (this model needs the WebSocket transport, not implemented)",
    ),
    # Request faults: the client's answer, no cooldown, no failover.
    Rule(
        _request_fault,
        code=lambda s: s.code or s.etype or "invalid_request",
        retryable=False,
        client_status=lambda s: s.status if 400 <= s.status < 500 else 400,
    ),
    Rule(
        _overload,
        code=lambda s: s.code or s.etype or "upstream_overloaded",
        cooldown=seconds(5.0),
        scope=CooldownScope.ACCOUNT,
        client_status=gateway_status,
    ),
    CATCH_ALL,
)

# An HTML page instead of JSON: chatgpt.com's WAF/Cloudflare, not the Codex backend.
HTML_TABLE: tuple[Rule, ...] = (
    # Fingerprint mismatch or a Cloudflare challenge: short cooldown, loud message.
    Rule(
        status(403),
        code="codex_fingerprint_rejected",
        cooldown=lambda s: max(10.0, min(default_cooldown(), 60.0)),
        scope=CooldownScope.ACCOUNT,
        client_status=502,
        message=lambda s: HTML_403_MESSAGE,
    ),
    Rule(
        anything,
        code="upstream_error",
        cooldown=seconds(5.0),
        scope=CooldownScope.ACCOUNT,
        client_status=gateway_status,
        message=lambda s: f"Codex backend answered HTTP {s.status} with an HTML page",
    ),
)


def classify(
    *,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    content_type: str = "",
    request_id: str = "",
    now: float | None = None,
) -> UpstreamError:
    """One HTTP reply of the backend (JSON `{"error":{...}}`, `{"detail": "..."}`, or HTML)."""
    if "text/html" in content_type or body.lstrip()[:1] == b"<":
        return classify_table(HTML_TABLE, Signal(status=status, message="", headers=headers, request_id=request_id))
    err, message = _error_fields(_parse(body))
    return classify_error(status=status, err=err, message=message, headers=headers, request_id=request_id, now=now)


def classify_error(
    *,
    status: int,
    err: Mapping[str, Any],
    message: str,
    headers: Mapping[str, str],
    request_id: str = "",
    now: float | None = None,
) -> UpstreamError:
    signal = Signal(
        now=time.time() if now is None else now,
        status=status,
        message=message or f"Codex backend answered HTTP {status}",
        etype=str(err.get("type") or ""),
        code=str(err.get("code") or ""),
        headers=headers,
        request_id=request_id,
        detail=err,
    )
    return classify_table(TABLE, signal)


def stream_error(event: Mapping[str, Any], headers: Mapping[str, str], request_id: str = "") -> UpstreamError:
    """A terminal failure inside a 200 stream (`response.failed` or `error`), classified like HTTP
    (docs/protocols/codex.md#stream-quirks)."""
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
    return classify_error(status=int(status), err=err, message=message, headers=headers, request_id=request_id)
