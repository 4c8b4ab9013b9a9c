"""The failure layer's provider half: upstream failures classified from tables.

A provider describes its upstream's failures as a table of rules (first match wins): when a
reply looks like this (status, error type/code, text), it means that (stable code, may
another account serve it, cooldown and its scope, a persistent account state, whether a
credential refresh may help, what the client sees). `classify` turns a reply into the
UpstreamError of the first matching rule; routing.dispatch acts on it (it alone retries,
refreshes and fails over) and never parses provider errors.

The generic HTTP table below is what OpenAI-compatible servers answer; providers keep their
own tables beside their executor (executors/<name>/errors.py). Wire facts: docs/protocols/.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings

from executors.base import CooldownScope, UpstreamError, UpstreamStreamError
from formats import Dialect, error_from_upstream


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After (seconds or HTTP date) or retry-after-ms; None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def default_cooldown() -> float:
    return float(settings.DEFAULT_COOLDOWN_SECONDS)


# ----------------------------------------------------------------------------- the tables


@dataclass(frozen=True, slots=True)
class Signal:
    """One upstream failure as the tables read it."""

    status: int
    message: str
    etype: str = ""  # the upstream's error type, e.g. "rate_limit_error"
    code: str = ""  # the upstream's error code, e.g. "usage_limit_reached"
    headers: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)  # the error object (e.g. resets_at)
    now: float = field(default_factory=time.time)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(k for k in (self.etype, self.code) if k)

    @property
    def text(self) -> str:
        return self.message.lower()


Predicate = Callable[[Signal], bool]
# Seconds to cool down for, from the reply (None: no cooldown, unless the rule backs off).
Cooldown = Callable[[Signal], float | None]


def status(*codes: int) -> Predicate:
    wanted = frozenset(codes)
    return lambda s: s.status in wanted


def server_error(s: Signal) -> bool:
    return s.status >= 500 or s.status == 0


def client_error(s: Signal) -> bool:
    return 400 <= s.status < 500


def kind(*names: str) -> Predicate:
    wanted = frozenset(names)
    return lambda s: bool(s.kinds & wanted)


def text(*needles: str) -> Predicate:
    return lambda s: any(n in s.text for n in needles)


def all_of(*preds: Predicate) -> Predicate:
    return lambda s: all(p(s) for p in preds)


def any_of(*preds: Predicate) -> Predicate:
    return lambda s: any(p(s) for p in preds)


def anything(s: Signal) -> bool:
    return True


def seconds(value: float | Callable[[], float]) -> Cooldown:
    return lambda s: value() if callable(value) else value


def retry_after(otherwise: Cooldown | None = None) -> Cooldown:
    """The reply's Retry-After, else `otherwise` (None: escalating backoff if the rule says so)."""

    def pick(s: Signal) -> float | None:
        wait = retry_after_seconds(s.headers)
        if wait is not None:
            return wait
        return otherwise(s) if otherwise is not None else None

    return pick


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of an error table: when `when` matches, the failure means the rest."""

    when: Predicate
    # The stable code: a value, or from the reply; None: the upstream's code, else `fallback_code`.
    code: str | Callable[[Signal], str] | None = None
    fallback_code: str = "upstream_error"
    retryable: bool = True  # another account may serve the same request
    client_status: int | Callable[[Signal], int] | None = None  # None: the upstream's status
    cooldown: Cooldown | None = None
    scope: CooldownScope = CooldownScope.FAMILY
    backoff: bool = False  # no cooldown from the reply: escalate per (account, scope)
    account_state: str | None = None  # a persistent state that needs a human
    refresh: bool = False  # a credential refresh (once, by dispatch) may help
    error_type: str | None = None
    message: Callable[[Signal], str] | None = None
    as_status: int | None = None  # the status to record instead of the reply's (e.g. 429)

    def error(self, s: Signal) -> UpstreamError:
        cooldown = self.cooldown(s) if self.cooldown is not None else None
        client = self.client_status(s) if callable(self.client_status) else self.client_status
        code = self.code(s) if callable(self.code) else self.code
        return UpstreamError(
            status=self.as_status or s.status,
            message=self.message(s) if self.message is not None else s.message,
            code=code or s.code or self.fallback_code,
            error_type=self.error_type,
            retryable=self.retryable,
            cooldown=cooldown,
            request_id=s.request_id,
            client_status=client,
            cooldown_scope=self.scope,
            account_state=self.account_state,
            refresh_credential=self.refresh,
            backoff=self.backoff and cooldown is None,
        )


def rest_account(
    when: Predicate,
    cooldown: Cooldown,
    *,
    code: str | None = None,
    fallback_code: str = "upstream_error",
    state: str | None = None,
    refresh: bool = False,
    client_status: int = 502,
) -> Rule:
    """A row that keeps the whole account out of rotation for a while (another may serve)."""
    return Rule(
        when,
        code=code,
        fallback_code=fallback_code,
        cooldown=cooldown,
        scope=CooldownScope.ACCOUNT,
        account_state=state,
        refresh=refresh,
        client_status=client_status,
    )


def classify(table: Sequence[Rule], s: Signal) -> UpstreamError:
    """The UpstreamError of the first rule that matches (tables end with a catch-all)."""
    for rule in table:
        if rule.when(s):
            return rule.error(s)
    return CATCH_ALL.error(s)


def gateway_status(s: Signal) -> int:
    """What a client sees for an upstream 5xx: 503 for "unavailable/overloaded", else 502."""
    return 503 if s.status in (0, 503, 529) else 502


CATCH_ALL = Rule(anything, client_status=502)
# Our credential may not do this: rest the account, let another serve.
FORBIDDEN = rest_account(status(403), seconds(default_cooldown), fallback_code="upstream_forbidden")

# What a generic OpenAI-compatible server's failures mean (docs/protocols/openai-compatible.md).
HTTP_TABLE: tuple[Rule, ...] = (
    # A limit: fail over; the reply's hint, else escalating backoff for (account, family).
    Rule(status(429), fallback_code="upstream_rate_limited", cooldown=retry_after(), backoff=True, client_status=429),
    # Our credential is the problem, not the client's request: dispatch refreshes once, then
    # another account serves it; a credential that stays rejected needs a human.
    Rule(
        status(401), fallback_code="upstream_auth_failed", refresh=True, account_state="auth_failed", client_status=502
    ),
    FORBIDDEN,
    Rule(
        server_error,
        cooldown=retry_after(lambda s: min(5.0, default_cooldown())),
        scope=CooldownScope.ACCOUNT,
        client_status=gateway_status,
    ),
    # "This account does not have that model": try the others, and rest (account, model) for
    # the shortest window that protects the upstream (escalating backoff, 5 s up).
    Rule(
        all_of(status(404), any_of(kind("model_not_found"), text("model"))),
        code="model_not_found",
        scope=CooldownScope.MODEL,
        backoff=True,
    ),
    # Any other 404 is about the request itself (e.g. a conversation id the upstream does not
    # know): the client's answer with the upstream's own code, no cooldown, no failover.
    Rule(status(404), fallback_code="not_found", retryable=False),
    Rule(status(400, 409, 413, 422), fallback_code="invalid_request", retryable=False),
    CATCH_ALL,
)


def http_signal(status_code: int, raw: bytes, headers: Mapping[str, str], request_id: str) -> Signal:
    """Any upstream error body (OpenAI, Anthropic, FastAPI detail, plain text) as a Signal."""
    message, etype, code = error_from_upstream(Dialect.CHAT, status_code, raw)
    return Signal(
        status=status_code,
        message=message,
        etype=etype or "",
        code=code or "",
        headers=headers,
        request_id=request_id,
    )


def classify_transport_error(exc: httpx.HTTPError) -> UpstreamError:
    timeout = isinstance(exc, httpx.TimeoutException)
    return UpstreamError(
        cooldown_scope=CooldownScope.ACCOUNT,
        status=504 if timeout else 502,
        message=f"upstream {'timed out' if timeout else 'connection failed'} ({type(exc).__name__})",
        code="upstream_timeout" if timeout else "upstream_unreachable",
        retryable=True,
        cooldown=5.0,
    )


def bad_response(message: str, request_id: str = "", code: str = "upstream_bad_response") -> UpstreamError:
    """The upstream answered something unusable before any event (another account may do better)."""
    return UpstreamError(status=502, message=message, retryable=True, request_id=request_id, code=code)


def stream_failed(exc: UpstreamStreamError, request_id: str = "") -> UpstreamError:
    """A stream that broke before its first content: still failover-able."""
    return bad_response(str(exc), request_id, exc.code)


@asynccontextmanager
async def closing_on_error(close: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
    """Close an open upstream reply if anything goes wrong before it is handed back; transport
    faults become classified errors."""
    try:
        yield
    except httpx.HTTPError as exc:
        await close()
        raise classify_transport_error(exc) from None
    except BaseException:
        await close()
        raise
