"""Account choice and failover before the first byte reaches the client.

Order: the conversation's bound account, then priority tiers and the catalog strategy. One
MGET tells which targets are cooling. Each attempt either opens the upstream (the handshake
was read, so the first byte can still be chosen) or raises a classified UpstreamError:
a classified `refresh_credential` → one credential refresh and one retry on the same account
(here only: executors never retry); needs-a-human → persistent account state; limits →
cooldown for the right scope; client faults → straight to the client. Upstream text in an
error is masked of the account's own secret values here (infra.redact) before it reaches the
client, the usage record, the account's last error or the admin.

Three steps: plan (cooldowns, affinity, order), attempt (one executor call, logged), verdict
(what a failure means for this account and for the request).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from accounts.selectors import AccountInfo, account_info_reload
from accounts.services import account_mark_state
from audit.services import UsageDraft
from executors.base import (
    Continuation,
    CooldownScope,
    Executor,
    UpstreamCall,
    UpstreamError,
    UpstreamResponse,
    UpstreamSession,
)
from executors.registry import executor_for
from formats import Dialect, UnsupportedFeature
from infra.db import db_call
from infra.redact import secret_strings
from routing.affinity import affinity_bind, affinity_key, affinity_parse
from routing.catalog import Resolution, Target
from routing.errors import ErrorCode, ProxyError
from routing.selection import selection_order, selection_used
from state.cooldown import (
    ACCOUNT_SCOPE,
    CandidateState,
    cooldown_check,
    cooldown_reset_backoff,
    cooldown_start,
    family_scope,
    model_scope,
)
from state.quota import headroom_key, headroom_parse
from statestore import StoreUnavailable, get_store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Opened:
    account: AccountInfo
    response: UpstreamResponse
    target: Target


@dataclass(slots=True)
class Affinity:
    key_id: int
    session: str | None
    preferred_account: int | None = None  # e.g. the account that served previous_response_id


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _scope(exc: UpstreamError, target: Target) -> str:
    if exc.cooldown_scope is CooldownScope.ACCOUNT:
        return ACCOUNT_SCOPE
    if exc.cooldown_scope is CooldownScope.MODEL:
        return model_scope(target.upstream_model)
    return family_scope(target.family)


@dataclass(slots=True)
class Job:
    """What to open: the resolved model and the validated client request."""

    resolution: Resolution
    dialect: Dialect
    body: dict[str, Any]
    stream: bool
    client_headers: Mapping[str, str] = field(default_factory=dict)
    provider_meta: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    # A client WebSocket's conversation (Codex keeps one upstream socket per conversation) and
    # what this turn continues (routing/conversation.py).
    session: UpstreamSession | None = None
    continuation: Continuation | None = None
    compaction: str | None = None  # see UpstreamCall.compaction


@dataclass(slots=True)
class _Plan:
    """The targets in the order to try them, each with its cooldown state."""

    targets: list[tuple[Target, CandidateState]]
    preferred: int | None


@dataclass(slots=True)
class _Verdicts:
    """What the failed attempts so far amount to (the final answer if none succeeds)."""

    earliest_reset: float | None = None
    last_error: UpstreamError | None = None
    unsupported: UnsupportedFeature | None = None

    def cooling(self, wait: float | None) -> None:
        if wait is not None:
            self.earliest_reset = wait if self.earliest_reset is None else min(self.earliest_reset, wait)


async def dispatch_open(job: Job, *, draft: UsageDraft, affinity: Affinity) -> Opened:
    """Open the request on the best available account, failing over on retryable errors.

    The failure layer's routing half: executors classify, this alone retries (one credential
    refresh per account), cools down, marks accounts that need a human, and fails over."""
    store = get_store()
    deadline = time.monotonic() + settings.DISPATCH_DEADLINE_SECONDS
    plan = await _plan(store, job.resolution, affinity)
    verdicts = _Verdicts()
    for target, state in plan.targets:
        if draft.attempts >= settings.DISPATCH_MAX_ATTEMPTS or time.monotonic() > deadline:
            break
        if state.wait is not None:
            verdicts.cooling(state.wait)
            continue
        executor = executor_for(target.account.provider)
        if executor is None:
            continue
        response = await _try_account(store, executor, job, target, draft, verdicts)
        if response is not None:
            # Bookkeeping only (backoff reset, affinity, LRU stamp): with the store down the
            # answer matters more, so it is skipped (fail open).
            with contextlib.suppress(StoreUnavailable):
                await _reward(store, job.resolution, target, state.escalated, affinity, plan.preferred)
            return Opened(account=response[0], response=response[1], target=target)
    raise _final(job.resolution, verdicts)


async def _plan(store: Any, resolution: Resolution, affinity: Affinity) -> _Plan:
    """One round trip for every target's cooldowns plus the conversation's binding and the
    accounts' quota headroom; then the order (affinity, priority tiers, the strategy)."""
    bind_key = (
        affinity_key(affinity.key_id, resolution.name, affinity.session) if affinity.session is not None else None
    )
    account_ids = list(dict.fromkeys(t.account.id for t in resolution.targets))
    also = [headroom_key(a) for a in account_ids] + ([bind_key] if bind_key else [])
    candidates = [(t.account.id, t.family, t.upstream_model) for t in resolution.targets]
    try:
        checked, extras = await cooldown_check(store, candidates, also=also)
    except StoreUnavailable:
        # Fail open: cooldowns are an optimisation (skip an account we know is limited). With
        # the store down every target counts as available; a limited account answers 429
        # again and dispatch fails over, as it would without any shared state.
        log.warning("state store unavailable: dispatching without cooldown state")
        checked, extras = [CandidateState(wait=None, escalated=False) for _ in candidates], [None] * len(also)
    by_target = {(t.account.id, t.upstream_model): s for t, s in zip(resolution.targets, checked, strict=True)}
    headroom = {a: h for a, raw in zip(account_ids, extras, strict=False) if (h := headroom_parse(raw)) is not None}
    preferred = affinity.preferred_account
    if preferred is None and bind_key:
        preferred = affinity_parse(extras[-1])
    try:
        ordered = await selection_order(store, resolution, preferred_account=preferred, headroom=headroom)
    except StoreUnavailable:
        # Fail open: without the shared round-robin counter, serve in priority order.
        ordered = sorted(resolution.targets, key=lambda t: -t.account.priority)
    return _Plan([(t, by_target[(t.account.id, t.upstream_model)]) for t in ordered], preferred)


async def _try_account(
    store: Any, executor: Executor, job: Job, target: Target, draft: UsageDraft, verdicts: _Verdicts
) -> tuple[AccountInfo, UpstreamResponse] | None:
    """Attempts on one account: the first, and one more after a credential refresh that
    changed something. None when this account cannot serve the request (verdict recorded)."""
    account = target.account
    refreshed = False
    while True:
        try:
            return account, await _attempt(executor, job, account, target, draft)
        except UnsupportedFeature as exc:
            # This account's path cannot express the request; another account's might.
            verdicts.unsupported = exc
            return None
        except UpstreamError as exc:
            error = exc.redact_values(secret_strings(account.secret))
        if error.refresh_credential and not refreshed:
            refreshed = True
            reloaded = await _refresh(executor, account)
            if isinstance(reloaded, AccountInfo):
                account = reloaded
                continue
            if reloaded is not None:
                error = reloaded.redact_values(secret_strings(account.secret))
        await _verdict(store, error, target, account, verdicts)
        return None


async def _attempt(
    executor: Executor, job: Job, account: AccountInfo, target: Target, draft: UsageDraft
) -> UpstreamResponse:
    """One upstream call, recorded in the attempt log."""
    draft.attempts += 1
    draft.account_id, draft.account_label = account.id, account.label
    call = UpstreamCall(
        account=account,
        dialect=job.dialect,
        body=job.body,
        stream=job.stream,
        upstream_model=target.upstream_model,
        client_headers=job.client_headers,
        provider_meta=job.provider_meta,
        request_id=draft.request_id,
        facts=target.facts,
        memo=job.memo,
        session=job.session,
        continuation=job.continuation,
        compaction=job.compaction,
    )
    started = time.perf_counter()
    attempt: dict[str, Any] = {"account": account.label, "model": target.upstream_model}
    draft.attempt_log.append(attempt)
    try:
        response = await executor.open(call)
    except UnsupportedFeature:
        draft.attempts -= 1
        draft.attempt_log.pop()
        raise
    except UpstreamError as exc:
        attempt.update(status=exc.status, code=exc.code, ms=_ms(started))
        draft.upstream_request_id = exc.request_id
        log.warning(
            "upstream attempt failed account=%s model=%s status=%s code=%s retryable=%s",
            account.label,
            target.upstream_model,
            exc.status,
            exc.code,
            exc.retryable,
        )
        raise
    attempt.update(status=200, ms=_ms(started))
    draft.upstream_request_id = response.request_id
    return response


async def _refresh(executor: Executor, account: AccountInfo) -> AccountInfo | UpstreamError | None:
    """The one credential refresh dispatch allows per account and request: the reloaded account
    when the credential changed, the refresh's own failure, or None (nothing changed)."""
    try:
        changed = await executor.refresh_credential(account)
    except UpstreamError as exc:
        return exc
    if not changed:
        return None
    reloaded = await db_call(account_info_reload, account.id)
    return reloaded if reloaded is not None else account


async def _verdict(store: Any, error: UpstreamError, target: Target, account: AccountInfo, verdicts: _Verdicts) -> None:
    """Apply the failure's consequences; a failure another account cannot fix ends dispatch."""
    started = await _penalize(store, error, target, account)
    if started and error.client_status == 429:
        verdicts.cooling(started)
    verdicts.last_error = error
    if not error.retryable:
        raise ProxyError(error.client_status, error.code, error.message, outcome="upstream_error")


def _final(resolution: Resolution, verdicts: _Verdicts) -> Exception:
    """The answer when no account served the request."""
    last_error, earliest_reset = verdicts.last_error, verdicts.earliest_reset
    if verdicts.unsupported is not None and last_error is None and earliest_reset is None:
        return verdicts.unsupported
    if last_error is not None and last_error.client_status != 429:
        return ProxyError(last_error.client_status, last_error.code, last_error.message, outcome="upstream_error")
    if last_error is not None or earliest_reset is not None:
        wait = earliest_reset if earliest_reset is not None else 1.0
        return ProxyError(
            429,
            ErrorCode.ALL_ACCOUNTS_COOLING,
            f"every account serving '{resolution.name}' is rate limited or cooling down; "
            f"retry after {int(wait + 0.999)} s",
            retry_after=wait,
            outcome="upstream_error" if last_error is not None else "rejected",
        )
    return ProxyError(
        503, ErrorCode.NO_ACCOUNT, f"no account can serve '{resolution.name}' right now", outcome="upstream_error"
    )


async def _penalize(store: Any, exc: UpstreamError, target: Target, account: AccountInfo) -> float | None:
    """Apply the error's consequences; returns the cooldown started (seconds), if any."""
    if exc.account_state:
        await db_call(account_mark_state, account_id=account.id, state=exc.account_state, error=exc.message)
    if exc.cooldown is not None or exc.backoff:
        try:
            return await cooldown_start(
                store, account_id=account.id, scope=_scope(exc, target), seconds=exc.cooldown, reason=exc.message
            )
        except StoreUnavailable:
            # Fail open: the failover to the next account still happens; only the memory
            # of this limit is lost, so the account may be tried (and answer 429) again.
            log.warning("state store unavailable: cooldown for account %s not recorded", account.label)
    return None


async def _reward(
    store: Any, resolution: Resolution, target: Target, escalated: bool, affinity: Affinity, preferred: int | None
) -> None:
    if escalated:
        await cooldown_reset_backoff(store, account_id=target.account.id, family=target.family)
    if affinity.session is not None and preferred != target.account.id:
        await affinity_bind(
            store, key_id=affinity.key_id, model=resolution.name, session=affinity.session, account_id=target.account.id
        )
    await selection_used(store, resolution, target)


async def dispatch_count_tokens(
    resolution: Resolution, body: dict[str, Any], headers: Mapping[str, str], draft: UsageDraft
) -> int | None:
    """Anthropic `count_tokens` answered by the upstream, when a target's provider can count
    exactly (an executor with a `count_tokens(call)` method); None: count locally. A failed
    count is not retried elsewhere: the local count is the fallback."""
    for target in resolution.targets:
        count = getattr(executor_for(target.account.provider), "count_tokens", None)
        if count is None:
            continue
        call = UpstreamCall(
            account=target.account,
            dialect=Dialect.MESSAGES,
            body=body,
            stream=False,
            upstream_model=target.upstream_model,
            client_headers=headers,
            facts=target.facts,
        )
        try:
            tokens: int = await count(call)
        except UpstreamError as exc:
            log.info("count_tokens upstream failed on account %s: %s", target.account.id, exc.code)
            return None
        draft.account_id, draft.served_model = target.account.id, target.upstream_model
        return tokens
    return None
