"""The small interface between routing and the provider executors.

Routing hands an executor an account and a parsed client request; the executor returns an
open upstream response (events or a whole body) or raises UpstreamError, which says whether
another account may be tried and how long this one should rest. Routing never branches on
provider names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from accounts.selectors import AccountInfo
from formats import Dialect, SseEvent


@dataclass(slots=True)
class UpstreamCall:
    account: AccountInfo
    dialect: Dialect  # the client's dialect
    body: dict[str, Any]  # parsed, validated client body
    stream: bool
    upstream_model: str


class UpstreamError(Exception):
    """An upstream failure, classified.

    retryable: another account may serve the same request (429, 5xx, network).
    cooldown: seconds this account (for this model family) should be skipped; None = no cooldown.
    """

    def __init__(
        self,
        *,
        status: int,
        message: str,
        code: str = "upstream_error",
        error_type: str | None = None,
        retryable: bool,
        cooldown: float | None = None,
        request_id: str = "",
        client_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.error_type = error_type
        self.retryable = retryable
        self.cooldown = cooldown
        self.request_id = request_id
        # What the client sees when this is the final answer (e.g. an upstream 400 is the
        # client's own fault and passes as 400; a 401 on our credential becomes 502).
        self.client_status = client_status if client_status is not None else status


@dataclass(slots=True)
class UpstreamResponse:
    """An open upstream answer. Exactly one of `events` (stream) or `body` is set."""

    dialect: Dialect  # dialect of the payload
    request_id: str = ""
    events: AsyncIterator[SseEvent] | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)

    async def aclose(self) -> None:
        for closer in self._closers:
            await closer()
        self._closers.clear()


class Executor(Protocol):
    provider: str

    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        """Send the request. Raises UpstreamError before any event was produced."""
        ...
