"""What GitLab's failures mean, as tables (docs/protocols/gitlab-duo.md, "Errors").

GitLab's own error text is kept in every message: operators act on "Proxy endpoints are not
enabled for this namespace", not on "upstream error".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from accounts.models import AccountState
from executors.base import CooldownScope, UpstreamError
from executors.errors import (
    CATCH_ALL,
    Predicate,
    Rule,
    Signal,
    all_of,
    anything,
    classify,
    rest_account,
    retry_after,
    seconds,
    server_error,
    status,
    text,
)
from executors.gitlab.exceptions import GitLabError

# How long an account-wide entitlement problem keeps the account out of rotation before a
# request may try it again (the Celery task re-probes meanwhile).
ENTITLEMENT_COOLDOWN = 3600.0
UNSUPPORTED_MODEL_COOLDOWN = 3600.0
# Vendor 429s through the gateway carry no Retry-After: 15 s doubling to 5 min.
BACKOFF_START, BACKOFF_MAX = 15.0, 300.0


class ResponsesOnly(Exception):
    """The model answers only on /v1/responses (OpenAI's 400 on chat/completions): not a
    failure but the path to use, so the executor switches path instead of failing."""


def _needs_human(when: Predicate, state: str, code: str, client_status: int = 502) -> Rule:
    """An entitlement problem: the account leaves rotation (a human or the re-probe brings it back)."""
    return rest_account(when, seconds(ENTITLEMENT_COOLDOWN), code=code, state=state, client_status=client_status)


def _gitlab_backoff(s: Signal) -> float:
    return float(s.detail.get("backoff") or BACKOFF_START)


# The AI gateway's replies (the vendor proxy endpoints).
GATEWAY_TABLE: tuple[Rule, ...] = (
    # Expired/revoked token or stale headers: dispatch re-mints once and retries once.
    Rule(
        lambda s: s.status == 401 or (s.status == 403 and "mismatch" in s.text),
        code="gitlab_gateway_auth_failed",
        refresh=True,
        cooldown=seconds(300.0),
        scope=CooldownScope.ACCOUNT,
        client_status=502,
    ),
    _needs_human(
        all_of(status(402), lambda s: s.code == "USAGE_QUOTA_EXCEEDED" or "credits" in s.text),
        AccountState.QUOTA_EXHAUSTED,
        "gitlab_credits_exhausted",
        client_status=402,
    ),
    _needs_human(status(402), AccountState.NOT_ENTITLED, "gitlab_proxy_not_enabled"),
    _needs_human(status(403), AccountState.NOT_ENTITLED, "gitlab_not_entitled"),
    # The model, not the account, is the problem: cool only (account, model), and do not walk
    # every GitLab account (they share the gateway's allow-list).
    Rule(
        all_of(status(400), text("unsupported model")),
        code="model_not_supported",
        retryable=False,
        cooldown=seconds(UNSUPPORTED_MODEL_COOLDOWN),
        scope=CooldownScope.MODEL,
        client_status=400,
    ),
    # Unit-primitive / "Invalid JSON" / "Failed to extract model name" are proxy bugs, vendor
    # 400s are the client's request: neither is helped by another account or a cooldown.
    Rule(status(400), fallback_code="invalid_request", retryable=False, client_status=400),
    Rule(status(404), code="gitlab_gateway_path_not_allowed", retryable=False, client_status=502),
    Rule(status(409, 413, 422), retryable=False),
    Rule(
        status(429),
        fallback_code="upstream_rate_limited",
        cooldown=retry_after(_gitlab_backoff),
        client_status=429,
    ),
    # Vendor overload: fail over, no cooldown.
    Rule(status(529), client_status=503),
    Rule(lambda s: s.status == 500 or "overloaded" in s.text, client_status=502),
    Rule(
        server_error,
        cooldown=seconds(5.0),
        scope=CooldownScope.ACCOUNT,
        client_status=lambda s: 503 if s.status == 503 else 502,
    ),
    CATCH_ALL,
)


def _fallback_off(code: int, stable_code: str, scope: CooldownScope, why: str) -> Rule:
    """The instance will not serve the fallback for an hour: say why after GitLab's own text."""
    return Rule(
        status(code),
        code=stable_code,
        cooldown=seconds(3600.0),
        scope=scope,
        client_status=502,
        message=lambda s: f"{s.message} ({why})",
    )


# The GitLab instance's code-suggestions fallback.
FALLBACK_TABLE: tuple[Rule, ...] = (
    _fallback_off(401, "gitlab_no_duo_access", CooldownScope.ACCOUNT, "no Duo access or the feature is disabled"),
    _fallback_off(
        404, "gitlab_fallback_unavailable", CooldownScope.MODEL, "this fallback is not enabled on the instance"
    ),
    Rule(status(429), code="upstream_rate_limited", cooldown=retry_after(seconds(60.0)), client_status=429),
    Rule(status(400, 413, 422), code="invalid_request", retryable=False),
    Rule(anything, code="upstream_error", cooldown=seconds(5.0), scope=CooldownScope.ACCOUNT, client_status=502),
)

# An error event at the start of a gateway stream.
STREAM_TABLE: tuple[Rule, ...] = (
    Rule(lambda s: "rate_limit" in s.etype, cooldown=seconds(BACKOFF_START), client_status=429),
    # Overloaded / api_error at the start of a stream: transient, fail over without cooldown.
    Rule(anything, client_status=502),
)

# A login/refresh/mint failure met on the request path (GitLabError kinds).
_MINT_TABLE: Mapping[str, Rule] = {
    GitLabError.RATE_LIMITED: Rule(
        anything,
        code="gitlab_mint_rate_limited",
        cooldown=lambda s: float(s.detail.get("retry_after") or 60.0),
        scope=CooldownScope.ACCOUNT,
        client_status=503,
    ),
    GitLabError.MINT_FAILED: Rule(
        anything, code="gitlab_mint_failed", cooldown=seconds(10.0), scope=CooldownScope.ACCOUNT, client_status=502
    ),
}
_MINT_TABLE = {**_MINT_TABLE, GitLabError.UNREACHABLE: _MINT_TABLE[GitLabError.MINT_FAILED]}


def gateway_error_text(raw: bytes) -> tuple[str, str]:
    """(text, error code) from any gateway/vendor envelope: FastAPI {"detail"}, GitLab
    {"error","error_code","message"}, OpenAI {"error":{...}}, Anthropic {"type":"error","error":{...}}."""
    try:
        obj: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        return raw.decode(errors="replace").strip()[:500] or "(empty body)", ""
    code = str(obj.get("error_code") or "")
    err = obj.get("error")
    if isinstance(err, dict):
        code = code or str(err.get("code") or err.get("type") or "")
        return str(err.get("message") or err.get("type") or orjson.dumps(err).decode())[:500], code
    parts = [str(v) for v in (obj.get("detail"), obj.get("message"), err) if isinstance(v, str) and v]
    if not parts and obj.get("detail") is not None:
        parts.append(orjson.dumps(obj["detail"]).decode())
    return (": ".join(dict.fromkeys(parts)) or orjson.dumps(obj).decode())[:500], code


def classify_gateway_error(
    *, status: int, headers: Mapping[str, str], raw: bytes, request_id: str, backoff: float
) -> UpstreamError:
    """One gateway reply; raises ResponsesOnly for the path switch the executor handles.
    `backoff` is this (account, family)'s next 429 cooldown."""
    body_text, code = gateway_error_text(raw)
    if status == 400 and "only supported in v1/responses" in body_text.lower():
        raise ResponsesOnly(body_text)
    signal = Signal(
        status=status,
        message=f"GitLab AI gateway: {body_text}",
        code=code,
        headers=headers,
        request_id=request_id,
        detail={"backoff": backoff},
    )
    return classify(GATEWAY_TABLE, signal)


def classify_fallback_error(status: int, message: str, headers: Mapping[str, str]) -> UpstreamError:
    return classify(FALLBACK_TABLE, Signal(status=status, message=f"GitLab instance: {message}", headers=headers))


def classify_stream_error(obj: Any, request_id: str) -> UpstreamError:
    """An `error` / `response.failed` event at the start of a gateway stream."""
    err: Any = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(obj, dict) and obj.get("type") == "response.failed":
        err = (obj.get("response") or {}).get("error")
    err = err if isinstance(err, dict) else (obj if isinstance(obj, dict) else {})
    etype = str(err.get("type") or err.get("code") or "")
    message = f"GitLab AI gateway stream error: {err.get('message') or etype or 'unknown'}"
    status_code = 429 if "rate_limit" in etype else 502
    signal = Signal(status=status_code, message=message, etype=etype, code=etype, request_id=request_id)
    return classify(STREAM_TABLE, signal)


def from_gitlab_error(exc: GitLabError) -> UpstreamError:
    """A login/refresh/mint failure met on the request path."""
    status_code = 429 if exc.kind == GitLabError.RATE_LIMITED else exc.status or 502
    signal = Signal(status=status_code, message=exc.message, detail={"retry_after": exc.retry_after})
    rule = _MINT_TABLE.get(exc.kind)
    if rule is None:
        state = exc.account_state or (
            AccountState.AUTH_FAILED if exc.kind == GitLabError.AUTH_FAILED else AccountState.NOT_ENTITLED
        )
        signal = Signal(status=exc.status or 401, message=exc.message)
        rule = _needs_human(anything, state, f"gitlab_{exc.kind}")
    return rule.error(signal)


__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "ResponsesOnly",
    "classify_fallback_error",
    "classify_gateway_error",
    "classify_stream_error",
    "from_gitlab_error",
    "gateway_error_text",
]
