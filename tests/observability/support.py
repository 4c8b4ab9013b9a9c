"""Scraping helpers: the endpoint's text parsed into {(name, labels): value}."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-test-token-123"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(base_url: str, token: str = TOKEN) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(base_url + "/metrics", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)
