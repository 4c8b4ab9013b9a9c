"""Client-facing errors: one enum of stable codes, rendered once per dialect by formats."""

from __future__ import annotations

import logging
from enum import StrEnum

import orjson
from django.db import InterfaceError, OperationalError

from formats import Dialect, error_body

log = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_FIELD = "unsupported_field"
    PREVIOUS_RESPONSE_NOT_FOUND = "previous_response_not_found"
    INVALID_CLIENT_KEY = "invalid_api_key"
    FORBIDDEN = "permission_denied"
    MODEL_NOT_FOUND = "model_not_found"
    REQUEST_TOO_LARGE = "request_too_large"
    ALL_ACCOUNTS_COOLING = "rate_limit_exceeded"
    CLIENT_RATE_LIMITED = "key_limit_exceeded"
    NO_ACCOUNT = "no_account_available"
    UPSTREAM_ERROR = "upstream_error"
    NOT_IMPLEMENTED = "not_implemented"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"


def internal_error(exc: BaseException) -> ProxyError:
    """What the client sees when the proxy itself failed (never the exception's text).

    The database unreachable (a request that needs a row its caches no longer hold) is a
    503 the client may retry; anything else is a bug: 500, logged with its traceback.
    """
    if isinstance(exc, OperationalError | InterfaceError):
        return ProxyError(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            "the proxy's database is unavailable; retry shortly",
            retry_after=5,
            outcome="proxy_error",
        )
    log.error("internal error", exc_info=exc)
    return ProxyError(500, ErrorCode.INTERNAL_ERROR, "internal proxy error", outcome="proxy_error")


class ProxyError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        outcome: str = "rejected",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.outcome = outcome

    def render(self, dialect: Dialect) -> tuple[int, dict[str, str], bytes]:
        body = error_body(dialect, status=self.status, message=self.message, code=self.code, param=self.param)
        headers = {"content-type": "application/json"}
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, int(self.retry_after + 0.999)))
        return self.status, headers, orjson.dumps(body)
