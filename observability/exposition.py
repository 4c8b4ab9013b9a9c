"""GET /metrics: the request-path metrics of every worker plus state read at scrape time.

Cooldowns, quota readings and the usage-buffer depth live in the shared state store, so
they are read here, once per scrape, and never cost the request path anything. They are the
same whichever worker answers the scrape, so they need no multiprocess bookkeeping.

Protection: served on the API handler (no session/CSRF middleware) only when
PROXY_METRICS_TOKEN is set (404 otherwise, so an unconfigured deployment exposes nothing),
and only to `Authorization: Bearer <token>` (401 otherwise, compared in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from observability.metrics import MULTIPROC_DIR

log = logging.getLogger(__name__)

# A scrape must answer even when Redis is slow; Prometheus' default scrape timeout is 10 s.
STATE_TIMEOUT_SECONDS = 5.0


class _Fixed:
    """A registry-like object serving families computed before rendering."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def _account_state(families: dict[str, GaugeMetricFamily]) -> None:
    from accounts.selectors import accounts_enabled
    from audit.services import usage_buffer_depth
    from state.cooldown import cooldowns_list
    from state.quota import quota_snapshots
    from statestore import get_store

    store = get_store()
    accounts = await accounts_enabled()
    cooldowns = await asyncio.gather(*(cooldowns_list(store, account_id=a.id) for a in accounts))
    quotas = await asyncio.gather(*(quota_snapshots(store, account_id=a.id) for a in accounts))
    now = time.time()
    for account, views, snaps in zip(accounts, cooldowns, quotas, strict=True):
        families["state"].add_metric([account.label, account.provider, account.state], 1)
        for view in views:
            families["cooldown"].add_metric([account.label, view.scope], round(view.remaining, 3))
        for snap in snaps:
            labels = [account.label, snap.family, snap.window]
            families["quota"].add_metric(labels, snap.used_percent)
            if snap.resets_at is not None:
                families["quota_reset"].add_metric(labels, max(0.0, round(snap.resets_at - now, 3)))
    families["buffer"].add_metric([], await usage_buffer_depth())


async def state_families() -> list[Metric]:
    families = {
        "cooldown": GaugeMetricFamily(
            "llmproxy_cooldown_remaining_seconds",
            "Seconds left on each live cooldown, by account and scope (account | family:F | model:M).",
            labels=["account", "scope"],
        ),
        "quota": GaugeMetricFamily(
            "llmproxy_quota_used_percent",
            "Last upstream quota reading, percent of the window used.",
            labels=["account", "family", "window"],
        ),
        "quota_reset": GaugeMetricFamily(
            "llmproxy_quota_resets_in_seconds",
            "Seconds until the quota window resets (when the upstream said).",
            labels=["account", "family", "window"],
        ),
        "state": GaugeMetricFamily(
            "llmproxy_account_info",
            "Enabled accounts and their state (1 per account).",
            labels=["account", "provider", "state"],
        ),
        "buffer": GaugeMetricFamily(
            "llmproxy_usage_buffer_depth", "Usage records waiting in the buffer to be written."
        ),
    }
    ok = 1.0
    try:
        await asyncio.wait_for(_account_state(families), timeout=STATE_TIMEOUT_SECONDS)
    except Exception:  # report the failure as a metric; the request-path metrics still serve
        log.warning("metrics: reading shared state failed", exc_info=True)
        ok = 0.0
    up = GaugeMetricFamily("llmproxy_state_scrape_ok", "1 if cooldowns, quotas and buffer depth were read.")
    up.add_metric([], ok)
    return [*families.values(), up]


def _render_process_metrics() -> bytes:
    if MULTIPROC_DIR:
        # Sum every worker's files (counters and histograms of dead workers included, which
        # keeps counters monotonic across worker restarts).
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


async def metrics_render() -> bytes:
    state = await state_families()
    # Reading many small mmap files is blocking I/O: keep it off the event loop.
    process = await asyncio.to_thread(_render_process_metrics) if MULTIPROC_DIR else _render_process_metrics()
    return process + generate_latest(_Fixed(state))  # type: ignore[arg-type]


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.PROXY_METRICS_TOKEN
    if not token:
        return HttpResponse(b'{"error":"not found"}', status=404, content_type="application/json")
    if not _authorized(request, token):
        return HttpResponse(
            b'{"error":"unauthorized"}',
            status=401,
            content_type="application/json",
            headers={"www-authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(await metrics_render(), content_type=CONTENT_TYPE_LATEST)
