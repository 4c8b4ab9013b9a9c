"""Soak: hold N concurrent streams through the proxy for a while and watch for leaks.

    .venv/bin/python -m bench.soak --streams 200 --minutes 30              # embedded: SQLite, 1 worker
    .venv/bin/python -m bench.soak --streams 200 --minutes 30 --services --workers 2   # PostgreSQL + Redis

The proxy runs under uvicorn in its own process group (bench.run helpers), against the fast
fake upstream (bench.fake_upstream); loopback only, bounded by --minutes/--seconds and by
--max-requests. Reports: requests, errors, usage rows vs requests (after the final flush; must
match exactly), and each web worker's RSS over time with a least-squares slope after warm-up.
Exit status 1 when errors > 0, rows != requests, or a worker's RSS slope exceeds --max-slope.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.run import (
    HOST,
    PY,
    RESULTS,
    ROOT,
    _rss,
    _start,
    _stop,
    proxy_env,
    setup_db_and_seed,
    start_uvicorn,
    stop_all,
)

MODEL = "bench-model"
FAKE_KEY = "sk-fake-upstream"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [PY, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, check=True, timeout=300
    )
    return out.stdout.decode().strip()


def _embedded_env(var_dir: Path, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="proxy_project.settings.base",
        PROXY_VAR_DIR=str(var_dir),
        WEB_WORKERS=str(workers),
        PROXY_ALLOW_PRIVATE_UPSTREAMS="true",  # the fake upstream is on 127.0.0.1
        LOG_LEVEL="WARNING",
    )
    return env


def _seed_embedded(env: dict[str, str], fake_port: int) -> str:
    _manage(env, "migrate", "--noinput")
    _manage(
        env, "account_add", "--label", "soak", "--base-url", f"http://{HOST}:{fake_port}/v1",
        "--api-key", FAKE_KEY, "--models", MODEL,
    )  # fmt: skip
    return _manage(env, "key_create", "--name", "soak", "--quiet").splitlines()[-1]


_COUNT = (
    "import asyncio\n"
    "from audit.services import usage_flush\n"
    "from audit.models import UsageRecord\n"
    "asyncio.run(usage_flush())\n"
    "print(UsageRecord.objects.count())\n"
)


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (y per x unit); 0 for fewer than two points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return 0.0 if den == 0 else sum((p[0] - mx) * (p[1] - my) for p in points) / den


class RssSampler:
    def __init__(self, pids: list[int], interval: float) -> None:
        self.pids, self.interval = pids, interval
        self.samples: dict[int, list[tuple[float, float]]] = {p: [] for p in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic() - self.t0
            for pid in self.pids:
                self.samples[pid].append((now, _rss(pid) / 2**20))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rss_summary(sampler: RssSampler, warm: float) -> dict[str, Any]:
    """Per worker: RSS at start, after `warm` seconds, at the end, peak, and the least-squares
    slope (MiB per minute) after warm-up."""
    rss: dict[str, Any] = {}
    for pid, points in sampler.samples.items():
        after = [(t / 60.0, m) for t, m in points if t >= warm]
        rss[str(pid)] = {
            "start_mib": round(points[0][1], 1) if points else None,
            "after_warmup_mib": round(after[0][1], 1) if after else None,
            "end_mib": round(points[-1][1], 1) if points else None,
            "peak_mib": round(max(m for _, m in points), 1) if points else None,
            "slope_mib_per_min": round(_slope(after), 3),
            "samples": len(points),
        }
    return rss


async def _load(url: str, key: str, streams: int, seconds: float, max_requests: int, chunks: int) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": f"soak bench:{chunks}:20"}],
    }
    headers = {"authorization": f"Bearer {key}"}
    deadline = time.monotonic() + seconds
    stats: dict[str, Any] = {"requests": 0, "ok": 0, "errors": 0, "error_samples": []}
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)

    async def one(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline and stats["requests"] < max_requests:
            stats["requests"] += 1
            try:
                r = await client.post(url + "/v1/chat/completions", json=body, headers=headers)
                good = r.status_code == 200 and r.content.rstrip().endswith(b"data: [DONE]")
                detail = f"{r.status_code} {r.content[-200:]!r}"
            except httpx.HTTPError as exc:
                good, detail = False, repr(exc)
            if good:
                stats["ok"] += 1
            else:
                stats["errors"] += 1
                if len(stats["error_samples"]) < 5:
                    stats["error_samples"].append(detail)

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(streams)))
    return stats


def soak(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.seconds if args.seconds else args.minutes * 60
    RESULTS.mkdir(exist_ok=True)
    fake_port, proxy_port = _free_port(), _free_port()
    fake = _start(
        [PY, "-m", "bench.fake_upstream", "--port", str(fake_port)], dict(os.environ), RESULTS / "soak-fake.log"
    )
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        var_dir = Path(tmp)
        if args.services:
            env = proxy_env(var_dir, args.workers)
            key = setup_db_and_seed(ROOT, env, fake_port, RESULTS / "soak-setup.log")
        else:
            env = _embedded_env(var_dir, args.workers)
            key = _seed_embedded(env, fake_port)
        srv = start_uvicorn("soak", proxy_port, ROOT, env, key, args.workers)
        try:
            workers = srv.workers()
            with RssSampler(workers, args.sample_seconds) as sampler:
                stats = asyncio.run(
                    _load(f"http://{HOST}:{proxy_port}", key, args.streams, seconds, args.max_requests, args.chunks)
                )
        finally:
            _stop(srv.proc)  # SIGTERM: lifespan shutdown flushes what the process buffered
            _stop(fake)
        rows = int(_manage(env, "shell", "-c", _COUNT).splitlines()[-1])
    rss = rss_summary(sampler, max(args.warmup, seconds * 0.2))
    result = {
        "streams": args.streams,
        "seconds": seconds,
        "mode": "services" if args.services else "embedded",
        "workers": args.workers,
        **{k: stats[k] for k in ("requests", "ok", "errors", "error_samples")},
        "usage_rows": rows,
        "rows_match": rows == stats["requests"],
        "rss": rss,
    }
    result["passed"] = (
        stats["errors"] == 0
        and result["rows_match"]
        and all(w["slope_mib_per_min"] <= args.max_slope for w in rss.values())
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=100, help="concurrent streams held open")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=0.0, help="overrides --minutes (short runs)")
    ap.add_argument("--max-requests", type=int, default=2_000_000, help="hard bound on requests sent")
    ap.add_argument("--chunks", type=int, default=20, help="events per stream, 20 ms apart")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--services", action="store_true", help="PostgreSQL + Redis on 127.0.0.1 (like bench.run)")
    ap.add_argument("--sample-seconds", type=float, default=1.0)
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds ignored for the RSS slope")
    ap.add_argument("--max-slope", type=float, default=2.0, help="MiB per minute allowed after warm-up")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    if args.workers > 1 and not args.services:
        ap.error("more than one worker needs --services (Redis)")
    try:
        result = soak(args)
    finally:
        stop_all()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
