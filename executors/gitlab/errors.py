"""AI-gateway and GitLab failures → UpstreamError (gitlab-duo.md §4.3, §4.4, §8).

GitLab's own error text is kept in every message: operators act on "Proxy endpoints are not
enabled for this namespace", not on "upstream error".
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from accounts.models import AccountState
from executors.base import CooldownScope, UpstreamError
from executors.errors import retry_after_seconds
from executors.gitlab.exceptions import GitLabError

# How long an account-wide entitlement problem keeps the account out of rotation before a
# request may try it again (the Celery task re-probes meanwhile).
ENTITLEMENT_COOLDOWN = 3600.0
UNSUPPORTED_MODEL_COOLDOWN = 3600.0
# §8: vendor 429 through the gateway carries no Retry-After: 15 s doubling to 5 min.
BACKOFF_START, BACKOFF_MAX = 15.0, 300.0


class GatewayAuthRejected(Exception):
    """The gateway refused the token (401, or a claim/header mismatch): re-mint once."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ResponsesOnly(Exception):
    """The model answers only on /v1/responses (OpenAI's 400 on chat/completions)."""


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
    *, status: int, headers: httpx.Headers, raw: bytes, request_id: str, backoff: float
) -> UpstreamError:
    """Map one gateway reply. Raises GatewayAuthRejected / ResponsesOnly for cases the
    executor handles itself; `backoff` is this (account, family)'s next 429 cooldown."""
    text, code = gateway_error_text(raw)
    lowered = text.lower()
    message = f"GitLab AI gateway: {text}"

    def err(**kw: Any) -> UpstreamError:
        kw.setdefault("code", code or "upstream_error")
        return UpstreamError(status=status, message=message, request_id=request_id, **kw)

    if status == 401 or (status == 403 and "mismatch" in lowered):
        raise GatewayAuthRejected(status, text)
    if status == 402:
        if code == "USAGE_QUOTA_EXCEEDED" or "insufficient_credits" in lowered or "credits" in lowered:
            return err(
                retryable=True,
                cooldown=ENTITLEMENT_COOLDOWN,
                cooldown_scope=CooldownScope.ACCOUNT,
                account_state=AccountState.QUOTA_EXHAUSTED,
                client_status=402,
                code="gitlab_credits_exhausted",
            )
        return err(
            retryable=True,
            cooldown=ENTITLEMENT_COOLDOWN,
            cooldown_scope=CooldownScope.ACCOUNT,
            account_state=AccountState.NOT_ENTITLED,
            client_status=502,
            code="gitlab_proxy_not_enabled",
        )
    if status == 403:
        return err(
            retryable=True,
            cooldown=ENTITLEMENT_COOLDOWN,
            cooldown_scope=CooldownScope.ACCOUNT,
            account_state=AccountState.NOT_ENTITLED,
            client_status=502,
            code="gitlab_not_entitled",
        )
    if status == 400:
        if "unsupported model" in lowered:
            # The model, not the account, is the problem: cool only (account, model), and do not
            # walk every GitLab account (they share the gateway's allow-list).
            return err(
                retryable=False,
                cooldown=UNSUPPORTED_MODEL_COOLDOWN,
                cooldown_scope=CooldownScope.MODEL,
                client_status=400,
                code="model_not_supported",
            )
        if "only supported in v1/responses" in lowered:
            raise ResponsesOnly(text)
        # Unit-primitive / "Invalid JSON" / "Failed to extract model name" are proxy bugs, vendor
        # 400s are the client's request: neither is helped by another account or a cooldown.
        return err(retryable=False, client_status=400, code=code or "invalid_request")
    if status == 404:
        return err(retryable=False, client_status=502, code="gitlab_gateway_path_not_allowed")
    if status in (409, 413, 422):
        return err(retryable=False, client_status=status)
    if status == 429:
        wait = retry_after_seconds(headers)
        return err(
            retryable=True,
            cooldown=wait if wait is not None else backoff,
            cooldown_scope=CooldownScope.FAMILY,
            client_status=429,
            code=code or "upstream_rate_limited",
        )
    if status in (500, 529) or "overloaded" in lowered:
        # Vendor overload: fail over, no cooldown (§8).
        return err(retryable=True, client_status=503 if status == 529 else 502)
    if status >= 500:
        return err(
            retryable=True,
            cooldown=5.0,
            cooldown_scope=CooldownScope.ACCOUNT,
            client_status=503 if status == 503 else 502,
        )
    return err(retryable=True, client_status=502)


def from_gitlab_error(exc: GitLabError) -> UpstreamError:
    """A login/refresh/mint failure met on the request path."""
    if exc.kind == GitLabError.RATE_LIMITED:
        return UpstreamError(
            status=429,
            message=exc.message,
            code="gitlab_mint_rate_limited",
            retryable=True,
            cooldown=exc.retry_after or 60.0,
            cooldown_scope=CooldownScope.ACCOUNT,
            client_status=503,
        )
    if exc.kind in (GitLabError.MINT_FAILED, GitLabError.UNREACHABLE):
        return UpstreamError(
            status=exc.status or 502,
            message=exc.message,
            code="gitlab_mint_failed",
            retryable=True,
            cooldown=10.0,
            cooldown_scope=CooldownScope.ACCOUNT,
            client_status=502,
        )
    state = exc.account_state or (
        AccountState.AUTH_FAILED if exc.kind == GitLabError.AUTH_FAILED else AccountState.NOT_ENTITLED
    )
    return UpstreamError(
        status=exc.status or 401,
        message=exc.message,
        code=f"gitlab_{exc.kind}",
        retryable=True,
        cooldown=ENTITLEMENT_COOLDOWN,
        cooldown_scope=CooldownScope.ACCOUNT,
        account_state=state,
        client_status=502,
    )
