"""Error bodies per dialect (docs/protocols/chat-completions.md#errors, docs/protocols/anthropic-messages.md#errors,
docs/protocols/translation.md#errors-across-dialects) and upstream error parsing."""

from __future__ import annotations

from typing import Any

import orjson

from ._core import Dialect, JSONDict

_ANTHROPIC_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "overloaded_error",
    }
)
# docs/protocols/translation.md#errors-across-dialects default codes for OpenAI-shaped bodies, so SDKs and humans get
# a stable reason.
_OPENAI_DEFAULT_CODE = {
    401: "invalid_api_key",
    403: "permission_denied",
    404: "model_not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
}


def openai_type_for_status(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def anthropic_type_for_status(status: int) -> str:
    table = {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "overloaded_error",
        504: "timeout_error",
        529: "overloaded_error",
    }
    if status in table:
        return table[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_type(type_: str | None, status: int) -> str:
    """Map any dialect's error type to an Anthropic ``error.type``."""
    if type_ in _ANTHROPIC_TYPES:
        return type_
    cross = {
        "server_error": "api_error",
        "rate_limit_exceeded": "rate_limit_error",
        "insufficient_quota": "rate_limit_error",
        "overloaded": "overloaded_error",
        "timeout": "timeout_error",
    }
    if type_ in cross:
        return cross[type_]
    return anthropic_type_for_status(status)


def openai_type(type_: str | None, status: int) -> str:
    if type_ in ("invalid_request_error", "rate_limit_error", "server_error", "insufficient_quota"):
        return type_
    cross = {"overloaded_error": "server_error", "api_error": "server_error", "timeout_error": "server_error"}
    if type_ in cross:
        return cross[type_]
    if type_ in ("authentication_error", "permission_error", "not_found_error", "request_too_large", "billing_error"):
        return "invalid_request_error"
    return openai_type_for_status(status)


def error_body(
    dialect: Dialect,
    *,
    status: int,
    message: str,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> JSONDict:
    if dialect is Dialect.MESSAGES:
        return {"type": "error", "error": {"type": anthropic_type(type, status), "message": message}}
    return {
        "error": {
            "message": message,
            "type": openai_type(type, status),
            "param": param,
            "code": code if code is not None else _OPENAI_DEFAULT_CODE.get(status),
        }
    }


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


def error_from_upstream(dialect: Dialect, status: int, body: bytes) -> tuple[str, str | None, str | None]:
    """Best-effort (message, type, code) from an upstream error body of any shape.

    Accepts OpenAI ``{"error":{...}}``, Anthropic ``{"type":"error","error":{...}}``, bare
    ``{"error":"text"}``, FastAPI-style ``{"detail": ...}`` and ``{"message": ...}``, or plain
    text. ``dialect`` is only a hint for the fallback type. Never raises.
    """
    try:
        obj: Any = orjson.loads(body) if body else None
    except Exception:
        obj = None
    try:
        if isinstance(obj, dict):
            err = obj.get("error")
            if isinstance(err, dict):
                msg = _text(err.get("message")) or _text(err.get("detail")) or f"upstream HTTP {status}"
                typ = _text(err.get("type"))
                code = err.get("code")
                return msg, typ, str(code) if code is not None and code != "" else None
            if isinstance(err, str) and err:
                return err, _text(obj.get("type")) if obj.get("type") != "error" else None, _text(obj.get("code"))
            detail = obj.get("detail")
            if isinstance(detail, str) and detail:
                return detail, None, None
            if detail is not None:
                return orjson.dumps(detail).decode()[:1000], None, None
            top = _text(obj.get("message"))
            if top:
                return top, _text(obj.get("type")), _text(obj.get("code"))
        text = body.decode("utf-8", "replace").strip()[:1000] if body else ""
    except Exception:
        text = ""
    text = text or ""
    fallback_type = anthropic_type_for_status(status) if dialect is Dialect.MESSAGES else openai_type_for_status(status)
    return (text or f"upstream HTTP {status}"), fallback_type, None
