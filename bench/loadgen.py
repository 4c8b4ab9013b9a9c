"""Closed-loop HTTP/1.1 load generator: raw asyncio + httptools on uvloop, keep-alive.

Run as its own process by bench.run: ``python -m bench.loadgen '<json spec>'``; prints one
JSON result line. ``concurrency`` connections each send requests back to back until
``duration`` seconds pass or ``requests`` are done (both bounds always apply; hard timeout
per request). Loopback only. Stream events are timed when their terminating blank line
arrives; inter-chunk lag = gap between consecutive events minus the nominal interval.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import uvloop


@dataclass(slots=True)
class Spec:
    host: str
    port: int
    path: str
    body: bytes
    headers: dict[str, str]
    concurrency: int
    duration: float
    requests: int
    interval_ms: float = 0.0
    expect: str = ""  # substring every successful body must contain (e.g. a Responses event name)
    timeout: float = 60.0


@dataclass(slots=True)
class Result:
    ok: int = 0
    errors: int = 0
    unexpected: int = 0
    first_error: str = ""
    ttfb: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    events: int = 0


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] | None = None
        self.status = 0
        self.first: float | None = None
        self.stamps: list[float] = []
        self.last = b""
        self.keep = b""
        self.body_size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(exc)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.body_size += len(body)
        if len(self.keep) < 8192:
            self.keep += body[:8192]
        n = (self.last + body).count(b"\n\n")
        self.last = body[-1:]
        self.stamps.extend([now] * n)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


def _request_bytes(spec: Spec) -> bytes:
    lines = [f"POST {spec.path} HTTP/1.1", f"host: {spec.host}:{spec.port}", f"content-length: {len(spec.body)}"]
    lines += [f"{k}: {v}" for k, v in spec.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + spec.body


async def _worker(spec: Spec, raw: bytes, deadline: float, budget: list[int], res: Result) -> None:
    loop = asyncio.get_running_loop()
    conn: _Client | None = None
    while budget[0] > 0 and time.perf_counter() < deadline:
        budget[0] -= 1
        try:
            if conn is None or conn.transport is None or conn.transport.is_closing():
                _, conn = await asyncio.wait_for(
                    loop.create_connection(_Client, spec.host, spec.port), timeout=spec.timeout
                )
            assert conn.transport is not None
            conn.done = loop.create_future()
            conn.first, conn.stamps, conn.last, conn.keep, conn.body_size = None, [], b"", b"", 0
            sent = time.perf_counter()
            conn.transport.write(raw)
            await asyncio.wait_for(conn.done, timeout=spec.timeout)
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            res.errors += 1
            res.first_error = res.first_error or f"{type(exc).__name__}: {exc}"
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            conn = None
            await asyncio.sleep(0.05)
            continue
        if conn.status != 200:
            res.errors += 1
            res.first_error = res.first_error or f"HTTP {conn.status}: {conn.keep[:300]!r}"
            continue
        if spec.expect and spec.expect.encode() not in conn.keep:
            res.unexpected += 1
            res.first_error = res.first_error or f"unexpected body: {conn.keep[:300]!r}"
            continue
        res.ok += 1
        res.ttfb.append(((conn.first or sent) - sent) * 1000)
        res.events += len(conn.stamps)
        if spec.interval_ms > 0:
            st = conn.stamps
            res.lags.extend((b - a) * 1000 - spec.interval_ms for a, b in itertools.pairwise(st))
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(spec: Spec) -> dict[str, Any]:
    raw = _request_bytes(spec)
    res = Result()
    budget = [spec.requests]
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    deadline = t0 + spec.duration
    tasks = [asyncio.create_task(_worker(spec, raw, deadline, budget, res)) for _ in range(spec.concurrency)]
    # Hard bound: a request in flight at the deadline gets its own timeout, no more.
    await asyncio.wait(tasks, timeout=spec.duration + spec.timeout + 5)
    for t in tasks:
        t.cancel()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    # Streaming lags: the last events of a stream (usage, [DONE]) legitimately arrive together.
    return {
        "ok": res.ok,
        "errors": res.errors,
        "unexpected": res.unexpected,
        "first_error": res.first_error,
        "wall_s": wall,
        "rps": res.ok / wall if wall else 0.0,
        "ttfb_p50_ms": pct(res.ttfb, 0.50),
        "ttfb_p99_ms": pct(res.ttfb, 0.99),
        "lag_p99_ms": pct(res.lags, 0.99),
        "lag_max_ms": max(res.lags) if res.lags else float("nan"),
        "events": res.events,
        "gen_cpu_s": cpu,
        "gen_cpu_util": cpu / wall if wall else 0.0,
    }


def main() -> None:
    raw = json.loads(sys.argv[1])
    raw["body"] = raw["body"].encode()
    spec = Spec(**raw)
    if not spec.host.startswith("127."):
        raise SystemExit("loopback only")
    print(json.dumps(uvloop.run(run(spec))), flush=True)


if __name__ == "__main__":
    main()
