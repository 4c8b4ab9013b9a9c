"""Account choice and failover before the first byte reaches the client."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.selectors import AccountInfo
from audit.services import UsageDraft
from executors.base import UpstreamCall, UpstreamError, UpstreamResponse
from executors.registry import executor_for
from formats import Dialect, UnsupportedFeature
from routing.cooldown import cooldown_remaining, cooldown_start
from routing.errors import ErrorCode, ProxyError
from statestore import get_store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Opened:
    account: AccountInfo
    response: UpstreamResponse


async def dispatch_open(
    *,
    candidates: list[AccountInfo],
    dialect: Dialect,
    body: dict[str, object],
    model: str,
    stream: bool,
    draft: UsageDraft,
    client_headers: Mapping[str, str] | None = None,
    provider_meta: dict[str, Any] | None = None,
    memo: dict[str, Any] | None = None,
) -> Opened:
    """Open the request on the first healthy account, failing over on retryable errors."""
    store = get_store()
    earliest_reset: float | None = None
    last_error: UpstreamError | None = None
    unsupported: UnsupportedFeature | None = None
    memo = {} if memo is None else memo
    for account in candidates:
        if draft.attempts >= settings.DISPATCH_MAX_ATTEMPTS:
            break
        wait = await cooldown_remaining(store, account_id=account.id, model=model)
        if wait is not None:
            earliest_reset = wait if earliest_reset is None else min(earliest_reset, wait)
            continue
        executor = executor_for(account.provider)
        if executor is None:
            continue
        draft.attempts += 1
        draft.account_id, draft.account_label = account.id, account.label
        try:
            response = await executor.open(
                UpstreamCall(
                    account=account,
                    dialect=dialect,
                    body=body,
                    stream=stream,
                    upstream_model=model,
                    client_headers=client_headers or {},
                    provider_meta=provider_meta or {},
                    request_id=draft.request_id,
                    memo=memo,
                )
            )
        except UnsupportedFeature as exc:
            # This account's path cannot express the request; another account's might.
            draft.attempts -= 1
            unsupported = exc
            continue
        except UpstreamError as exc:
            draft.upstream_request_id = exc.request_id
            log.warning(
                "upstream attempt failed account=%s status=%s code=%s retryable=%s",
                account.label,
                exc.status,
                exc.code,
                exc.retryable,
            )
            if exc.cooldown:
                await cooldown_start(store, account_id=account.id, model=model, seconds=exc.cooldown)
            last_error = exc
            if exc.retryable:
                continue
            raise ProxyError(exc.client_status, exc.code, exc.message, outcome="upstream_error") from None
        draft.upstream_request_id = response.request_id
        return Opened(account=account, response=response)

    if unsupported is not None and last_error is None:
        raise unsupported
    if last_error is not None:
        if last_error.client_status == 429:
            raise ProxyError(
                429,
                ErrorCode.ALL_ACCOUNTS_COOLING,
                f"every account serving '{model}' is rate limited; retry later",
                retry_after=last_error.cooldown,
                outcome="upstream_error",
            )
        raise ProxyError(last_error.client_status, last_error.code, last_error.message, outcome="upstream_error")
    if earliest_reset is not None:
        raise ProxyError(
            429,
            ErrorCode.ALL_ACCOUNTS_COOLING,
            f"every account serving '{model}' is cooling down; retry after {int(earliest_reset + 0.999)} s",
            retry_after=earliest_reset,
        )
    raise ProxyError(503, ErrorCode.NO_ACCOUNT, f"no account can serve '{model}' right now", outcome="upstream_error")
