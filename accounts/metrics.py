"""Account gauges for /metrics, read from the shared state at scrape time (never on the request
path): one info series per enabled account, its live cooldowns and its quota readings."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from accounts.selectors import accounts_enabled
from state.cooldown import cooldowns_list
from state.quota import quota_snapshots
from statestore import get_store


async def account_families() -> list[Metric]:
    cooldown = GaugeMetricFamily(
        "llmproxy_cooldown_remaining_seconds",
        "Seconds left on each live cooldown, by account and scope (account | family:F | model:M).",
        labels=["account", "scope"],
    )
    quota = GaugeMetricFamily(
        "llmproxy_quota_used_percent",
        "Last upstream quota reading, percent of the window used.",
        labels=["account", "family", "window"],
    )
    quota_reset = GaugeMetricFamily(
        "llmproxy_quota_resets_in_seconds",
        "Seconds until the quota window resets (when the upstream said).",
        labels=["account", "family", "window"],
    )
    info = GaugeMetricFamily(
        "llmproxy_account_info",
        "Enabled accounts and their state (1 per account).",
        labels=["account", "provider", "state"],
    )
    store = get_store()
    accounts = await accounts_enabled()
    cooldowns = await asyncio.gather(*(cooldowns_list(store, account_id=a.id) for a in accounts))
    quotas = await asyncio.gather(*(quota_snapshots(store, account_id=a.id) for a in accounts))
    now = time.time()
    for account, views, snaps in zip(accounts, cooldowns, quotas, strict=True):
        info.add_metric([account.label, account.provider, account.state], 1)
        for view in views:
            cooldown.add_metric([account.label, view.scope], round(view.remaining, 3))
        for snap in snaps:
            labels = [account.label, snap.family, snap.window]
            quota.add_metric(labels, snap.used_percent)
            if snap.resets_at is not None:
                quota_reset.add_metric(labels, max(0.0, round(snap.resets_at - now, 3)))
    return [cooldown, quota, quota_reset, info]
