"""The board's "Test now" and "Refresh credential now", done through a provider's executor.

Providers use these as their Provider.probe / Provider.refresh (executors.registry.provider_spec
does by default) and wrap them where they have more to say (GitLab, Codex).
"""

from __future__ import annotations

from collections.abc import Callable

from accounts.models import UpstreamAccount
from accounts.providers import ProbeResult
from accounts.selectors import account_info_from_row
from executors.base import Executor, UpstreamCall, UpstreamError
from executors.http import http_clients_close
from formats import Dialect
from infra.redact import redact_values, secret_strings
from statestore import StateStore
from statestore.factory import call_sync


def executor_probe(executor: Executor) -> Callable[[UpstreamAccount], ProbeResult]:
    """A 1-token chat request on the account's first model, reported for the admin."""

    def probe(account: UpstreamAccount) -> ProbeResult:
        model = sorted(account.model_names)[0]
        info = account_info_from_row(account)
        secrets = secret_strings(info.secret)
        call = UpstreamCall(
            account=info,
            dialect=Dialect.CHAT,
            body={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
            stream=False,
            upstream_model=model,
        )

        async def run(_store: StateStore) -> ProbeResult:
            try:
                response = await executor.open(call)
                await response.aclose()
                return ProbeResult(True, f"{model} answered (request id {response.request_id or 'n/a'}).")
            except UpstreamError as exc:
                text = exc.redact_values(secrets).message
                return ProbeResult(False, f"{model}: HTTP {exc.status} {exc.code}", upstream_text=text)
            except Exception as exc:
                text = redact_values(str(exc), secrets)
                return ProbeResult(False, f"{model}: {type(exc).__name__}", upstream_text=text)
            finally:
                # The pooled client belongs to this short-lived loop; close it with the loop.
                await http_clients_close()

        return call_sync(run)

    return probe


def executor_refresh(executor: Executor) -> Callable[[UpstreamAccount], ProbeResult]:
    """The executor's own credential refresh (a no-op for static keys), reported for the admin."""

    def refresh(account: UpstreamAccount) -> ProbeResult:
        async def run(_store: StateStore) -> ProbeResult:
            try:
                changed = await executor.refresh_credential(account_info_from_row(account))
            except Exception as exc:
                # UpstreamError carries the provider's specific message; say it, not the class.
                text = getattr(exc, "message", "") or str(exc)
                return ProbeResult(False, f"refresh failed: {text}", upstream_text=str(exc))
            finally:
                await http_clients_close()
            return ProbeResult(True, "credential refreshed" if changed else "nothing to refresh for this credential")

        return call_sync(run)

    return refresh
