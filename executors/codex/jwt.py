"""ChatGPT token claims, decoded WITHOUT verifying the signature (docs/protocols/codex.md#token-claims).

The proxy is not a relying party: it only reads which ChatGPT account/plan a token it was
handed belongs to and when it expires. The upstream verifies the token on every call.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"


class TokenFormatError(ValueError):
    pass


def jwt_payload(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenFormatError("not a JWT (expected three dot-separated parts)")
    seg = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(seg.encode()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise TokenFormatError(f"unreadable JWT payload: {exc}") from None
    if not isinstance(payload, dict):
        raise TokenFormatError("JWT payload is not an object")
    return payload


def _claim(payload: dict[str, Any], namespace: str, name: str) -> Any:
    # Real tokens nest the claims under the namespace; some exports flatten them to
    # "<namespace>.<name>". Accept both.
    nested = payload.get(namespace)
    if isinstance(nested, dict) and name in nested:
        return nested[name]
    return payload.get(f"{namespace}.{name}")


@dataclass(frozen=True, slots=True)
class ChatGPTClaims:
    account_id: str | None
    plan_type: str | None
    user_id: str | None
    email: str | None
    expires_at: float | None  # `exp`, epoch seconds
    fedramp: bool


def chatgpt_claims(token: str) -> ChatGPTClaims:
    payload = jwt_payload(token)
    account_id = _claim(payload, AUTH_CLAIM, "chatgpt_account_id")
    plan = _claim(payload, AUTH_CLAIM, "chatgpt_plan_type")
    user = _claim(payload, AUTH_CLAIM, "chatgpt_user_id") or _claim(payload, AUTH_CLAIM, "user_id")
    email = payload.get("email") or _claim(payload, PROFILE_CLAIM, "email")
    exp = payload.get("exp")
    return ChatGPTClaims(
        account_id=str(account_id) if account_id else None,
        plan_type=str(plan) if plan else None,
        user_id=str(user) if user else None,
        email=str(email) if email else None,
        expires_at=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
        fedramp=_claim(payload, AUTH_CLAIM, "chatgpt_account_is_fedramp") is True,
    )


def claims_or_none(token: str | None) -> ChatGPTClaims | None:
    if not token:
        return None
    try:
        return chatgpt_claims(token)
    except TokenFormatError:
        return None
