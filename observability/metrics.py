"""Prometheus metrics recorded on the request path, and the token-refresh counter.

Hot-path rules (see docs/observability.md, bench/bench_metrics.py for the measured cost):
- one call per request, from `routing.proxy._Finisher.finish()`, after the answer is out;
- counters and histograms only (no gauges that need per-process bookkeeping); state that
  lives in Redis (cooldowns, quotas, buffer depth) is read at scrape time instead, see
  observability/exposition.py;
- bounded labels: the model is a catalog name or "other", accounts/codes are capped per
  process, so a client inventing model names cannot grow the series count.

Multi-worker: when PROMETHEUS_MULTIPROC_DIR is set (bin/run does it), prometheus_client
keeps every value in a per-process mmap file there and the scrape sums all workers' files.
The variable must be in the environment before prometheus_client is imported.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus_client opens its files lazily and fails if the folder is missing.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# LLM traffic spans 5 ms (a rejected key, a cached answer) to minutes (long reasoning
# streams); the upper buckets stop at the 120 s dispatch deadline.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

REQUESTS = Counter(
    "llmproxy_requests",
    "Client requests by surface, catalog model, account and outcome.",
    ["surface", "model", "account", "outcome"],
)
TTFB = Histogram(
    "llmproxy_ttfb_seconds",
    "Time from request start to the first byte sent to the client.",
    ["surface"],
    buckets=LATENCY_BUCKETS,
)
DURATION = Histogram(
    "llmproxy_request_duration_seconds",
    "Whole request duration (streams: until the last byte).",
    ["surface", "outcome"],
    buckets=LATENCY_BUCKETS,
)
ATTEMPTS = Histogram(
    "llmproxy_request_attempts",
    "Upstream attempts per request (0 = rejected before any upstream call).",
    ["surface"],
    buckets=(0, 1, 2, 3, 4, 5, 8),
)
REQUEST_ERRORS = Counter(
    "llmproxy_request_errors",
    "Requests that ended in an error, by the error code the client saw.",
    ["surface", "outcome", "code"],
)
UPSTREAM_ERRORS = Counter(
    "llmproxy_upstream_errors",
    "Failed upstream attempts (failed over or not) by account and error class.",
    ["account", "code"],
)
TOKENS = Counter(
    "llmproxy_tokens",
    "Tokens as recorded in the usage records (estimated ones included).",
    ["model", "account", "kind"],
)
HOSTED_TOOLS_DROPPED = Counter(
    "llmproxy_hosted_tools_dropped",
    "Requests whose offered hosted tool (e.g. web_search) was dropped because the serving account cannot run it.",
    ["surface", "tool"],
)
TOKEN_REFRESH = Counter(
    "llmproxy_token_refresh",
    "Upstream credential refreshes by provider and outcome.",
    ["provider", "outcome"],
)

# Client WebSockets (routing/api/websocket.py). The open-socket gauge is the one gauge here:
# inc/dec at open/close, summed over live workers in multiprocess mode ("livesum").
WS_OPEN = Gauge("llmproxy_ws_open_sockets", "Client WebSockets open now.", multiprocess_mode="livesum")
WS_TURNS = Histogram(
    "llmproxy_ws_turns_per_socket",
    "response.create frames handled per client WebSocket, observed when it closes.",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500),
)
WS_UPSTREAM_RECONNECTS = Counter(
    "llmproxy_ws_upstream_reconnects",
    "Kept upstream WebSockets replaced mid-conversation, by provider and reason.",
    ["provider", "reason"],
)

OTHER = "other"
NONE = "none"
_LABEL_OK = re.compile(r"[A-Za-z0-9._:/@+-]{1,100}")


class _Capped:
    """Passes through at most `cap` distinct well-formed values per process; the rest are
    "other". Account labels and error codes are admin- or code-defined, so the cap is a
    safety net against a bug or a chatty upstream, not something normal traffic reaches."""

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if not value:
            return NONE
        if len(self.seen) >= self.cap or not _LABEL_OK.fullmatch(value):
            return OTHER
        self.seen.add(value)
        return value


_account_label = _Capped(500)
_code_label = _Capped(200)


class _KnownModels:
    """Client-visible catalog names, refreshed at most every `ttl` seconds (and when the
    account/catalog caches change generation). Unknown names become "other". The catalog's
    owner (routing) plugs its source in at start-up: `known_models_source`."""

    names: frozenset[str] = frozenset()
    loaded_at = -1e9
    generation = -1
    source: Callable[[], Awaitable[Iterable[str]]] | None = None
    generation_of: Callable[[], int] = staticmethod(lambda: 0)
    ttl = 30.0


_models = _KnownModels()


def known_models_source(
    names: Callable[[], Awaitable[Iterable[str]]], *, generation: Callable[[], int], ttl: float
) -> None:
    """Where the model label's known names come from (routing.apps registers the catalog)."""
    _models.source, _models.generation_of, _models.ttl = names, generation, ttl


async def _model_label(name: str) -> str:
    if not name:
        return NONE
    if _models.source is None:
        return OTHER  # no catalog registered: keep the label bounded
    now = time.monotonic()
    generation = _models.generation_of()
    if now - _models.loaded_at > _models.ttl or generation != _models.generation:
        # The caches behind the catalog are warm on the request path; this costs no query in
        # steady state and runs once per TTL per process.
        _models.names = frozenset(await _models.source())
        _models.loaded_at, _models.generation = now, generation
    return name if name in _models.names else OTHER


def known_models_reset() -> None:
    """Forget the cached catalog names (tests; the TTL does it in production)."""
    _models.names, _models.loaded_at, _models.generation = frozenset(), -1e9, -1


# Label children cached by label tuple: `.labels()` validates and takes a lock on every
# call; a dict hit is several times cheaper. Bounded by the label caps above.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


class RequestRecord(Protocol):
    """What the request metrics read of a finished request (audit.services.UsageDraft)."""

    @property
    def request_id(self) -> str: ...
    @property
    def surface(self) -> str: ...
    @property
    def outcome(self) -> Any: ...
    @property
    def requested_model(self) -> str: ...
    @property
    def account_label(self) -> str: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def ttfb_ms(self) -> int | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def error_code(self) -> str: ...
    @property
    def attempt_log(self) -> Sequence[dict[str, Any]]: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...


def record_draft(d: RequestRecord, model: str) -> None:
    """Record one finished request (sync part; `model` is already a bounded label)."""
    surface = d.surface
    outcome = str(d.outcome)
    account = _account_label(d.account_label)
    _child(REQUESTS, surface, model, account, outcome).inc()
    _child(DURATION, surface, outcome).observe(d.duration_ms / 1000)
    if d.ttfb_ms is not None:
        _child(TTFB, surface).observe(d.ttfb_ms / 1000)
    _child(ATTEMPTS, surface).observe(d.attempts)
    if d.error_code:
        _child(REQUEST_ERRORS, surface, outcome, _code_label(d.error_code)).inc()
    for attempt in d.attempt_log:
        code = attempt.get("code")
        if code:
            _child(UPSTREAM_ERRORS, _account_label(str(attempt.get("account", ""))), _code_label(str(code))).inc()
        for tool in attempt.get("dropped_tools") or ():
            _child(HOSTED_TOOLS_DROPPED, surface, _code_label(str(tool))).inc()
    if d.input_tokens:
        _child(TOKENS, model, account, "input").inc(d.input_tokens)
    if d.output_tokens:
        _child(TOKENS, model, account, "output").inc(d.output_tokens)
    if d.cached_tokens:
        _child(TOKENS, model, account, "cached").inc(d.cached_tokens)


async def metrics_record(draft: RequestRecord) -> None:
    """The one call per request (from `_Finisher.finish()`); never raises."""
    try:
        record_draft(draft, await _model_label(draft.requested_model))
    except Exception:  # a metrics bug must not fail or slow the client's request
        log.exception("could not record metrics for request %s", draft.request_id)


# ------------------------------------------------------------------------- websockets


def ws_socket_opened() -> None:
    WS_OPEN.inc()


def ws_socket_closed(turns: int) -> None:
    try:
        WS_OPEN.dec()
        WS_TURNS.observe(turns)
    except Exception:
        log.exception("could not record a closed WebSocket")


def ws_upstream_reconnect(provider: str, reason: str) -> None:
    try:
        _child(WS_UPSTREAM_RECONNECTS, provider, _code_label(reason)).inc()
    except Exception:
        log.exception("could not count an upstream reconnect")


# ------------------------------------------------------------------------- token refresh


def token_refresh_count(provider: str, outcome: str) -> None:
    try:
        _child(TOKEN_REFRESH, provider, _code_label(outcome)).inc()
    except Exception:
        log.exception("could not count a token refresh")


P = ParamSpec("P")
T = TypeVar("T")


def counts_refresh(provider: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate an async refresh function: counts `outcome` = the result's `.reason` if it
    has one (Codex: refreshed | fresh | sibling), else "ok"; "failed" when it raises.

    A decorator keeps the change in the refresh services to one line each and cannot alter
    their control flow (the result and the exception pass through untouched)."""

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def counted(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit | KeyboardInterrupt | SystemExit):
                    token_refresh_count(provider, "cancelled" if _is_cancel(exc) else "failed")
                raise
            reason = getattr(result, "reason", None)
            token_refresh_count(provider, reason if isinstance(reason, str) else "ok")
            return result

        return counted

    return wrap


def _is_cancel(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError)


# ------------------------------------------------------------------------- usage recording

USAGE_DEAD_LETTERS = Counter(
    "llmproxy_usage_dead_letters",
    "Usage records the database refused even after cleaning, set aside in UsageDeadLetter.",
)


def usage_dead_letters_count(n: int) -> None:
    try:
        USAGE_DEAD_LETTERS.inc(n)
    except Exception:
        log.exception("could not count usage dead letters")
