"""Body rules (docs/protocols/codex.md#request-body-rules), rate-limit parsing
(docs/protocols/codex.md#rate-limit-signals) and error classification (docs/protocols/codex.md#errors) — pure
functions."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from executors.base import CooldownScope
from executors.codex import errors, ratelimits
from executors.codex.request import codex_body as _codex_body
from formats import UnsupportedFeature

pytestmark = pytest.mark.django_db  # settings only; no queries

MSG = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
DEFAULT = "You are a helpful assistant."
DEV = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "cli prompt"}]}


def codex_body(body: dict[str, Any], default_instructions: str = DEFAULT) -> dict[str, Any]:
    return _codex_body(body, default_instructions=default_instructions)


def test_body_forces_store_and_stream_and_drops_rejected_fields() -> None:
    body = codex_body(
        {
            "model": "gpt-5.5",
            "input": [MSG],
            "store": True,
            "stream": False,
            "temperature": 0.2,
            "top_p": 1,
            "max_output_tokens": 10,
            "user": "u",
            "metadata": {"a": "b"},
            "safety_identifier": "s",
            "prompt_cache_retention": "24h",
            "stream_options": {"include_usage": True},
            "truncation": "auto",
            "service_tier": "flex",
            "instructions": "",
            "reasoning": {"effort": "low"},
            "parallel_tool_calls": True,
        }
    )
    assert body["store"] is False and body["stream"] is True
    for gone in (
        "temperature",
        "top_p",
        "max_output_tokens",
        "user",
        "metadata",
        "safety_identifier",
        "prompt_cache_retention",
        "stream_options",
        "truncation",
        "service_tier",
        "parallel_tool_calls",
    ):
        assert gone not in body, gone
    assert body["include"] == ["reasoning.encrypted_content"]
    # An empty `instructions` and no developer item: the neutral default goes out instead.
    assert body["instructions"] == DEFAULT


@pytest.mark.parametrize(
    ("body", "instructions"),
    [
        # The official CLI 0.169 shape: developer items, no `instructions` -> sent as is.
        ({"input": [DEV, MSG]}, None),
        ({"input": [DEV, MSG], "instructions": ""}, None),
        # A caller's own instructions win.
        ({"input": [MSG], "instructions": "be brief"}, "be brief"),
        # A system item counts as caller text (it goes out as a developer item).
        ({"input": [{"type": "message", "role": "system", "content": "sys"}, MSG]}, None),
        # No system text at all -> the default, also for a plain-string input and no input.
        ({"input": [MSG]}, DEFAULT),
        ({"input": "hi"}, DEFAULT),
        ({"input": [MSG], "instructions": None}, DEFAULT),
    ],
)
def test_instructions_added_only_when_the_caller_gave_no_system_text(
    body: dict[str, Any], instructions: str | None
) -> None:
    out = codex_body({"model": "m", **body})
    assert out.get("instructions") == instructions
    assert out.get("instructions") or any(i.get("role") == "developer" for i in out["input"])


def test_default_instructions_follow_the_account_setting() -> None:
    from executors.codex.config import codex_config

    assert codex_config({}).default_instructions == DEFAULT
    cfg = codex_config({"default_instructions": "Answer in French."})
    assert codex_body({"model": "m", "input": [MSG]}, cfg.default_instructions)["instructions"] == "Answer in French."
    assert codex_config({"default_instructions": "   "}).default_instructions == DEFAULT  # never blank


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_logprobs", 3),
        ("previous_response_id", "resp_1"),
        ("background", True),
        ("conversation", "c"),
        ("include", ["message.output_text.logprobs"]),
        ("logit_bias", {"1": 2}),
    ],
)
def test_body_rejects_what_codex_cannot_honour(field: str, value: Any) -> None:
    with pytest.raises(UnsupportedFeature) as info:
        codex_body({"model": "m", "input": [MSG], field: value})
    assert info.value.field == field


def test_body_rewrites_system_items_tools_and_compaction_trigger() -> None:
    body = codex_body(
        {
            "model": "m",
            "input": [{"type": "message", "role": "system", "content": "sys"}, MSG, {"type": "compaction_trigger"}],
            "tools": [{"type": "web_search_preview"}],
            "service_tier": "priority",
        }
    )
    assert body["input"][0]["role"] == "developer" and body["input"][-1] == {"type": "compaction_trigger"}
    assert body["tools"] == [{"type": "web_search"}] and body["service_tier"] == "priority"
    assert codex_body({"model": "m", "input": "hi"})["input"] == [MSG]


def test_quota_headers_parse_families_and_resets() -> None:
    now = 1_000_000.0
    headers = {
        "x-codex-primary-used-percent": "42.5",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(now) + 600),
        "x-codex-secondary-used-percent": "10",
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-after-seconds": "3600",
        "x-codex-secondary-reset-at": "",
        "x-codex-active-limit": "premium",
        "x-codex-bengalfox-primary-used-percent": "7",
        "x-codex-bengalfox-primary-window-minutes": "0",
        "x-codex-primary-over-secondary-limit-percent": "50",
        "x-codex-plan-type": "plus",
    }
    readings = {(r.family, r.window): r for r in ratelimits.readings_from_headers(headers, now=now)}
    assert set(readings) == {("premium", "primary"), ("premium", "secondary"), ("codex_bengalfox", "primary")}
    p = readings[("premium", "primary")]
    assert (p.used_percent, p.window_minutes, p.resets_at) == (42.5, 300, now + 600)
    s = readings[("premium", "secondary")]
    assert s.resets_at == now + 3600  # reset-at blank → reset-after-seconds
    b = readings[("codex_bengalfox", "primary")]
    assert b.window_minutes is None and b.resets_at is None  # 0/blank = no window
    # without an active limit the plain family keeps its limit id
    assert {r.family for r in ratelimits.readings_from_headers({"x-codex-primary-used-percent": "1"})} == {"codex"}
    rfc = ratelimits.readings_from_headers(
        {"x-codex-primary-used-percent": "1", "x-codex-primary-reset-at": "2030-01-01T00:00:00Z"}
    )
    assert rfc[0].resets_at == 1893456000.0


def test_quota_event_parse() -> None:
    event = {
        "type": "codex.rate_limits",
        "plan_type": "plus",
        "metered_limit_name": "premium",
        "rate_limits": {
            "primary": {"used_percent": 42.0, "window_minutes": 300, "reset_at": 1795310000},
            "secondary": {"used_percent": 10.0, "window_minutes": 10080, "reset_at": 1795800000},
        },
    }
    readings = ratelimits.readings_from_event(event)
    assert [(r.family, r.window, r.used_percent, r.resets_at) for r in readings] == [
        ("premium", "primary", 42.0, 1795310000.0),
        ("premium", "secondary", 10.0, 1795800000.0),
    ]
    assert ratelimits.event_family({"limit_name": "x"}) == "x" and ratelimits.event_family({}) == "codex"


def _classify(status: int, body: Any, headers: dict[str, str] | None = None, ctype: str = "application/json") -> Any:
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    return errors.classify(status=status, body=raw, headers=headers or {}, content_type=ctype, now=1000.0)


def test_usage_limit_reached_cools_the_family_until_resets_at() -> None:
    err = _classify(
        429,
        {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "resets_at": 1000 + 13872,
                "resets_in_seconds": 99,
            }
        },
    )
    assert err.code == "usage_limit_reached" and err.cooldown == 13872
    assert err.cooldown_scope is CooldownScope.FAMILY and err.retryable and err.client_status == 429
    fallback = _classify(429, {"error": {"type": "usage_limit_reached", "resets_in_seconds": 99}})
    assert fallback.cooldown == 99


CLASSIFY_TABLE = [
    # status, body, expect (code, retryable, client_status, extra checks)
    (429, {"error": {"type": "rate_limit_exceeded", "message": "slow down"}}, "rate_limit_exceeded", True, 429),
    (429, {"error": {"type": "usage_not_included", "message": "no codex"}}, "usage_not_included", True, 502),
    (401, {"error": {"code": "token_invalidated", "message": "x"}}, "codex_upstream_unavailable", True, 503),
    (401, {"error": {"code": "token_expired", "message": "x"}}, "upstream_auth_failed", True, 502),
    (400, {"detail": "Store must be set to false"}, "invalid_request", False, 400),
    (400, {"error": {"code": "context_length_exceeded", "message": "x"}}, "context_length_exceeded", False, 400),
    (404, {"detail": "Not Found"}, "upstream_not_found", True, 502),
    (
        503,
        {"error": {"code": "biscuit_baker_service_me_circuit_open", "message": "x"}},
        "biscuit_baker_service_me_circuit_open",
        True,
        503,
    ),
    (
        429,
        {"error": {"message": "Selected model is at capacity. Please try a different model."}},
        "model_at_capacity",
        True,
        503,
    ),
]


@pytest.mark.parametrize(("status", "body", "code", "retryable", "client_status"), CLASSIFY_TABLE)
def test_classification_table(status: int, body: Any, code: str, retryable: bool, client_status: int) -> None:
    err = _classify(status, body)
    assert (err.code, err.retryable, err.client_status) == (code, retryable, client_status)
    if code == "upstream_auth_failed":
        assert err.refresh_credential
    if code == "codex_upstream_unavailable":
        assert err.account_state == "session_terminated" and not err.refresh_credential
    if code == "usage_not_included":
        assert err.account_state == "not_entitled"


def test_html_403_says_fingerprint() -> None:
    err = _classify(403, "<!DOCTYPE html><title>Just a moment...</title>", ctype="text/html")
    assert err.code == "codex_fingerprint_rejected" and "fingerprint" in err.message
    assert err.retryable and err.cooldown and err.cooldown >= 10 and err.cooldown_scope is CooldownScope.ACCOUNT


def test_stream_failure_classified_like_http() -> None:
    overloaded = {"type": "response.failed", "response": {"error": {"code": "server_is_overloaded", "message": "x"}}}
    err = errors.stream_error(overloaded, {})
    assert err.retryable and err.client_status == 503
    limit = {
        "type": "error",
        "status_code": 429,
        "error": {"type": "usage_limit_reached", "resets_at": time.time() + 50},
    }
    assert errors.stream_error(limit, {}).code == "usage_limit_reached"
    bad = {"type": "error", "code": "invalid_request_error", "message": "bad"}
    assert not errors.stream_error({**bad, "error": {"type": "invalid_request_error"}}, {}).retryable
