"""What the Anthropic API's failures mean, as tables (docs/protocols/anthropic.md#errors).

Errors arrive as `{"type":"error","error":{"type":<error type>,"message":...}}` with the HTTP
status of the type (400 invalid_request_error, 401 authentication_error, 402 billing_error,
403 permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error,
500 api_error, 504 timeout_error, 529 overloaded_error), or as an SSE `error` event in a 200
stream. The tables key on the status and the error type; `retry-after` and the
`anthropic-ratelimit-*` headers say how long a limited account rests.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from accounts.models import AccountState
from executors import errors as e
from executors.anthropic.ratelimits import exhausted_wait
from executors.base import CooldownScope, UpstreamError
from executors.errors import Rule, Signal, classify
from formats import Dialect, error_from_upstream

# An organisation out of credit stays out until someone pays; the request path re-tries it
# after this long (the admin's "Test now" brings it back sooner).
BILLING_COOLDOWN = 3600.0
OVERLOADED_COOLDOWN = 5.0


def _limit_wait(s: Signal) -> float | None:
    """The spent window's reset from the rate-limit headers (None: escalating backoff)."""
    return exhausted_wait(s.headers, now=s.now)


_OUT_OF_CREDIT = e.any_of(e.status(402), e.kind("billing_error"), e.text("credit balance"))

TABLE: tuple[Rule, ...] = (
    Rule(
        e.any_of(e.status(429), e.kind("rate_limit_error")),
        fallback_code="upstream_rate_limited",
        cooldown=e.retry_after(_limit_wait),
        backoff=True,
        client_status=429,
        as_status=429,
    ),
    # Anthropic's capacity, not this account: fail over, short rest unless told otherwise.
    Rule(
        e.any_of(e.status(529), e.kind("overloaded_error")),
        fallback_code="upstream_overloaded",
        cooldown=e.retry_after(e.seconds(OVERLOADED_COOLDOWN)),
        client_status=503,
    ),
    # A revoked or mistyped key: nothing to refresh; another account serves, a human fixes it.
    Rule(
        e.any_of(e.status(401), e.kind("authentication_error")),
        fallback_code="upstream_auth_failed",
        account_state=AccountState.AUTH_FAILED,
        cooldown=e.seconds(e.default_cooldown),
        scope=CooldownScope.ACCOUNT,
        client_status=502,
    ),
    e.rest_account(
        _OUT_OF_CREDIT, e.seconds(BILLING_COOLDOWN), code="upstream_out_of_credit", state=AccountState.QUOTA_EXHAUSTED
    ),
    e.rest_account(
        e.any_of(e.status(403), e.kind("permission_error")),
        e.seconds(e.default_cooldown),
        fallback_code="upstream_forbidden",
    ),
    # "model: claude-x" not found: this account cannot serve the model; the others may.
    Rule(
        e.all_of(e.status(404), e.text("model")),
        code="model_not_found",
        scope=CooldownScope.MODEL,
        backoff=True,
    ),
    Rule(e.status(404), fallback_code="not_found", retryable=False),
    Rule(e.status(413), fallback_code="request_too_large", retryable=False),
    Rule(e.status(400, 409, 422), fallback_code="invalid_request", retryable=False),
    Rule(
        e.server_error,
        cooldown=e.retry_after(e.seconds(OVERLOADED_COOLDOWN)),
        scope=CooldownScope.ACCOUNT,
        client_status=e.gateway_status,
    ),
    e.CATCH_ALL,
)

# An `error` event in a 200 stream before any content: the same meanings, without a status.
_STREAM_STATUS = {"rate_limit_error": 429, "overloaded_error": 529, "api_error": 500, "timeout_error": 504}


def classify_reply(status_code: int, raw: bytes, headers: Mapping[str, str], request_id: str) -> UpstreamError:
    message, etype, _code = error_from_upstream(Dialect.MESSAGES, status_code, raw)
    signal = Signal(
        status=status_code,
        message=f"Anthropic API: {message}",
        etype=etype or "",
        headers=headers,
        request_id=request_id,
    )
    return classify(TABLE, signal)


def classify_stream_event(data: bytes, request_id: str) -> UpstreamError:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    etype = str(err.get("type") or "") if isinstance(err, dict) else ""
    status_code = _STREAM_STATUS.get(etype, 502)
    return classify_reply(status_code, data, {}, request_id)
