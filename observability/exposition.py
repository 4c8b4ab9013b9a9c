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
from collections.abc import Awaitable, Callable, Iterable, Sequence

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


# State read at scrape time, one collector per owner (accounts: account state, cooldowns and
# quota; audit: the usage buffer), registered from their AppConfig.ready().
StateCollector = Callable[[], Awaitable[list[Metric]]]
_collectors: list[StateCollector] = []


def state_collector_register(collect: StateCollector) -> None:
    if collect not in _collectors:
        _collectors.append(collect)


async def state_families() -> list[Metric]:
    ok = 1.0
    families: list[Metric] = []
    try:
        async with asyncio.timeout(STATE_TIMEOUT_SECONDS):
            results = await asyncio.gather(*(collect() for collect in _collectors), return_exceptions=True)
    except TimeoutError:
        results = [TimeoutError("reading shared state timed out")]
    for result in results:
        if isinstance(result, BaseException):
            # Report the failure as a metric; the request-path metrics still serve.
            log.warning("metrics: reading shared state failed", exc_info=result)
            ok = 0.0
        else:
            families.extend(result)
    up = GaugeMetricFamily("llmproxy_state_scrape_ok", "1 if cooldowns, quotas and buffer depth were read.")
    up.add_metric([], ok)
    return [*families, up]


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
