"""Recording rules without a server: label bounds, the refresh counter, multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from observability.metrics import _Capped, counts_refresh, token_refresh_count

ROOT = Path(__file__).resolve().parents[2]


def _refreshes(provider: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("llmproxy_token_refresh_total", {"provider": provider, "outcome": outcome}) or 0.0


def test_capped_labels_pass_known_values_then_fold_to_other() -> None:
    cap = _Capped(2)
    assert cap("a") == "a" and cap("b") == "b"
    assert cap("c") == "other"  # over the cap
    assert cap("a") == "a"  # already seen values keep their label
    assert cap("") == "none"
    assert _Capped(5)("has space") == "other"  # malformed never becomes a label


class _Outcome:
    reason = "sibling"


async def test_counts_refresh_counts_reason_ok_and_failed() -> None:
    @counts_refresh("unit")
    async def with_reason() -> _Outcome:
        return _Outcome()

    @counts_refresh("unit")
    async def plain() -> str:
        return "token"

    @counts_refresh("unit")
    async def broken() -> None:
        raise RuntimeError("refused")

    before = {o: _refreshes("unit", o) for o in ("sibling", "ok", "failed")}
    assert isinstance(await with_reason(), _Outcome)
    assert await plain() == "token"
    with pytest.raises(RuntimeError):
        await broken()
    token_refresh_count("unit", "ok")
    assert _refreshes("unit", "sibling") - before["sibling"] == 1
    assert _refreshes("unit", "ok") - before["ok"] == 2
    assert _refreshes("unit", "failed") - before["failed"] == 1


def test_refresh_services_are_counted() -> None:
    from executors.codex.services import codex_token_refresh
    from executors.gitlab import grants, oauth

    # the decorator (functools.wraps) is what counts; these are the services that refresh
    for fn in (codex_token_refresh, oauth._refresh, grants._mint):
        assert hasattr(fn, "__wrapped__"), fn


_WORKER = """
import sys
from types import SimpleNamespace
from observability.metrics import record_draft
draft = SimpleNamespace(surface="chat", outcome="ok", account_label="acct-A", duration_ms=1500, ttfb_ms=40,
                        attempts=1, error_code="", attempt_log=[], input_tokens=10, output_tokens=5, cached_tokens=0)
for _ in range(int(sys.argv[1])):
    record_draft(draft, "gpt-4o-mini")
"""

_SCRAPE = """
from observability.exposition import _render_process_metrics
print(_render_process_metrics().decode())
"""


def test_multiprocess_mode_sums_every_worker(tmp_path: Any) -> None:
    # given two "workers" (separate processes) sharing PROMETHEUS_MULTIPROC_DIR
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", _WORKER, str(n)], cwd=ROOT, env=env, check=True, timeout=60)
    # when a third process renders the scrape
    text = subprocess.run(
        [sys.executable, "-c", _SCRAPE], cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    # then it reports the sum of both
    from prometheus_client.parser import text_string_to_metric_families

    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    key = (
        "llmproxy_requests_total",
        (("account", "acct-A"), ("model", "gpt-4o-mini"), ("outcome", "ok"), ("surface", "chat")),
    )
    assert values[key] == 7
    assert values[("llmproxy_ttfb_seconds_count", (("surface", "chat"),))] == 7
    assert values[("llmproxy_tokens_total", (("account", "acct-A"), ("kind", "input"), ("model", "gpt-4o-mini")))] == 70
