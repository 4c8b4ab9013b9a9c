"""The Anthropic error table and rate-limit headers (docs/protocols/anthropic.md#errors)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest

from executors.anthropic.errors import classify_reply, classify_stream_event
from executors.anthropic.ratelimits import exhausted_wait, readings_from_headers
from executors.base import CooldownScope


def _body(etype: str, message: str = "m") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("status", "etype", "message", "retryable", "client", "state", "scope"),
    [
        (400, "invalid_request_error", "max_tokens: Field required", False, 400, None, CooldownScope.FAMILY),
        (400, "invalid_request_error", "Your credit balance is too low", True, 502, "quota_exhausted",
         CooldownScope.ACCOUNT),
        (401, "authentication_error", "invalid x-api-key", True, 502, "auth_failed", CooldownScope.ACCOUNT),
        (402, "billing_error", "pay", True, 502, "quota_exhausted", CooldownScope.ACCOUNT),
        (403, "permission_error", "no", True, 502, None, CooldownScope.ACCOUNT),
        (404, "not_found_error", "model: claude-9", True, 404, None, CooldownScope.MODEL),
        (413, "request_too_large", "big", False, 413, None, CooldownScope.FAMILY),
        (429, "rate_limit_error", "slow down", True, 429, None, CooldownScope.FAMILY),
        (500, "api_error", "oops", True, 502, None, CooldownScope.ACCOUNT),
        (529, "overloaded_error", "Overloaded", True, 503, None, CooldownScope.FAMILY),
    ],
)  # fmt: skip
def test_table(
    status: int, etype: str, message: str, retryable: bool, client: int, state: str | None, scope: CooldownScope
) -> None:
    err = classify_reply(status, _body(etype, message), {}, "req_1")
    assert (err.retryable, err.client_status, err.account_state) == (retryable, client, state)
    assert err.cooldown_scope is scope and message in err.message and err.request_id == "req_1"


def test_429_rests_until_retry_after_else_the_spent_windows_reset() -> None:
    assert classify_reply(429, _body("rate_limit_error"), {"retry-after": "12"}, "").cooldown == 12.0
    reset = time.time() + 40
    headers = {
        "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": _iso(reset),
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": _iso(reset + 100),
    }
    err = classify_reply(429, _body("rate_limit_error"), headers, "")
    assert err.cooldown is not None and 35 < err.cooldown <= 41
    bare = classify_reply(429, _body("rate_limit_error"), {}, "")
    assert bare.cooldown is None and bare.backoff


def test_overloaded_stream_event_fails_over() -> None:
    err = classify_stream_event(_body("overloaded_error", "Overloaded"), "req_2")
    assert err.retryable and err.client_status == 503 and err.status == 529
    limited = classify_stream_event(_body("rate_limit_error"), "")
    assert limited.retryable and limited.client_status == 429


def test_readings_from_every_documented_header_family() -> None:
    at = time.time() + 60
    headers = {}
    for kind, limit, left in (("requests", 50, 10), ("tokens", 1000, 900), ("input-tokens", 800, 800),
                              ("output-tokens", 200, 0)):  # fmt: skip
        headers.update({
            f"anthropic-ratelimit-{kind}-limit": str(limit),
            f"anthropic-ratelimit-{kind}-remaining": str(left),
            f"anthropic-ratelimit-{kind}-reset": _iso(at),
        })  # fmt: skip
    readings = {r.kind: r for r in readings_from_headers(headers)}
    assert set(readings) == {"requests", "tokens", "input-tokens", "output-tokens"}
    assert readings["requests"].used_percent == 80.0 and readings["output-tokens"].used_percent == 100.0
    wait = exhausted_wait(headers)
    assert wait is not None and 55 < wait <= 61
    assert readings_from_headers({"anthropic-ratelimit-requests-limit": "x"}) == []
