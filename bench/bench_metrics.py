"""Per-request cost of the observability added to the request path.

    .venv/bin/python bench/bench_metrics.py [--n 50000]

Measures, in-process and without a server (so nothing else is in the number):
- `metrics_record(draft)`: the one call `_Finisher.finish()` makes per request (model label
  from the warm catalog-name cache, counters, histograms, label-child cache), for a plain
  success and for a streamed request that failed over once;
- `with_request_id`: the ASGI wrapper that binds the request id and adds the response
  headers, per request (a 1-message answer) and per extra streamed chunk (its `send` hop);
both with prometheus_client's in-memory values (1 worker) and in multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, mmap files: what bin/run uses), the latter in a child process
because the mode is fixed when prometheus_client is imported.

Prints the median of 5 rounds in microseconds per call. No database, no Redis needed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")
os.environ.setdefault("PROXY_VAR_DIR", str(ROOT / "var" / "bench"))

import django  # noqa: E402

django.setup()

from accounts.selectors import cache_generation  # noqa: E402
from audit.services import UsageDraft  # noqa: E402
from observability import metrics  # noqa: E402
from observability.requestid import with_request_id  # noqa: E402

ROUNDS = 5


def _drafts() -> tuple[UsageDraft, UsageDraft]:
    ok = UsageDraft(surface="chat", requested_model="gpt-4o-mini", served_model="gpt-4o-mini-2024-07-18")
    ok.account_label, ok.attempts, ok.ttfb_ms, ok.duration_ms = "acct-A", 1, 180, 950
    ok.input_tokens, ok.output_tokens = 1200, 300
    ok.attempt_log = [{"account": "acct-A", "model": "gpt-4o-mini", "status": 200, "ms": 170}]
    failover = UsageDraft(surface="responses", requested_model="gpt-4.1", stream=True)
    failover.account_label, failover.attempts, failover.ttfb_ms, failover.duration_ms = "acct-B", 2, 420, 12_000
    failover.input_tokens, failover.output_tokens, failover.cached_tokens = 5000, 800, 4000
    failover.attempt_log = [
        {"account": "acct-A", "model": "gpt-4.1", "status": 429, "code": "rate_limit_exceeded", "ms": 80},
        {"account": "acct-B", "model": "gpt-4.1", "status": 200, "ms": 300},
    ]
    return ok, failover


def _warm_catalog() -> None:
    # The request path's catalog cache is warm in steady state; mirror that.
    metrics._models.names = frozenset({"gpt-4o-mini", "gpt-4.1", "claude-sonnet-4", "gpt-5.5"})
    metrics._models.loaded_at = time.monotonic() + 1e9
    metrics._models.generation = cache_generation()


async def _per_call_us(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    rounds = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        rounds.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(rounds)


async def _asgi_costs(n: int) -> tuple[float, float]:
    """(wrapper cost per request, wrapper cost per extra streamed chunk), in µs."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    def app_with(chunks: int) -> Callable[..., Awaitable[None]]:
        async def app(scope: Any, rcv: Any, snd: Any) -> None:
            await snd({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x")]})
            for _ in range(chunks):
                await snd({"type": "http.response.body", "body": b"data", "more_body": True})
            await snd({"type": "http.response.body", "body": b"", "more_body": False})

        return app

    scope = {"type": "http", "path": "/v1/chat/completions", "headers": [(b"authorization", b"Bearer x")]}
    one, fifty = app_with(0), app_with(50)
    bare1 = await _per_call_us(lambda: one(scope, receive, send), n)
    wrapped1 = await _per_call_us(lambda: with_request_id(one, scope, receive, send), n)
    bare50 = await _per_call_us(lambda: fifty(scope, receive, send), n // 10)
    wrapped50 = await _per_call_us(lambda: with_request_id(fifty, scope, receive, send), n // 10)
    per_request = wrapped1 - bare1
    per_chunk = ((wrapped50 - bare50) - per_request) / 50
    return per_request, per_chunk


async def measure(n: int) -> dict[str, float]:
    _warm_catalog()
    ok, failover = _drafts()
    out = {
        "metrics_record, plain success": await _per_call_us(lambda: metrics.metrics_record(ok), n),
        "metrics_record, streamed + 1 failover": await _per_call_us(lambda: metrics.metrics_record(failover), n),
    }
    out["request-id ASGI wrapper, per request"], out["request-id ASGI wrapper, per streamed chunk"] = await _asgi_costs(
        n
    )
    return out


def _print(mode: str, results: dict[str, float]) -> None:
    for name, us in results.items():
        print(f"| {mode} | {name} | {us:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode = "multiprocess (mmap)" if metrics.MULTIPROC_DIR else "in-memory (1 worker)"
    results = asyncio.run(measure(args.n))
    if args.child:
        _print(mode, results)
        return
    print("| prometheus_client values | what | µs per call (median of 5) |")
    print("|---|---|---|")
    _print(mode, results)
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as tmp:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tmp}
        subprocess.run([sys.executable, __file__, "--child", "--n", str(args.n)], env=env, check=True)


if __name__ == "__main__":
    main()
