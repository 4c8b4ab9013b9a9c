"""The usage buffer's depth for /metrics, read at scrape time."""

from __future__ import annotations

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from audit.services import usage_buffer_depth


async def buffer_families() -> list[Metric]:
    depth = GaugeMetricFamily("llmproxy_usage_buffer_depth", "Usage records waiting in the buffer to be written.")
    depth.add_metric([], await usage_buffer_depth())
    return [depth]
