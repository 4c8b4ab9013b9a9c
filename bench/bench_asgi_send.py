"""Server CPU per streamed event: Django's response path vs the raw ASGI send, same server.

    .venv/bin/python -m bench.bench_asgi_send [--streams 200] [--events 200] [--ms 20] [--reps 3]

One granian worker (production flags) serves bench/asgi_send_app.py: ``/raw`` sends each event
as one ASGI message; ``/v1/stream`` goes through the product's ASGI entry point, ApiHandler and
a django-ninja view returning a StreamingHttpResponse over the same generator. The two are run
alternately; the difference per event is Django's (and the request-id wrapper's) share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from bench.run import (
    HOST,
    RESULTS,
    ROOT,
    Monitor,
    Server,
    Workload,
    _free_port,
    _loadgen,
    _start,
    _wait_ready,
    loadavg,
    stop_all,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--ms", type=float, default=20.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    var = tempfile.mkdtemp(prefix="bench-asgi-send-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DJANGO_"))}
    env.update(PROXY_VAR_DIR=var, PYTHONPATH=str(ROOT))
    cmd = [str(ROOT / ".venv/bin/granian"), "--interface", "asgi", "--loop", "uvloop", "--host", HOST]
    port = args.port or _free_port()
    cmd += ["--port", str(port), "--workers", "1", "bench.asgi_send_app:application"]
    log = RESULTS / "asgi-send.log"
    srv = Server("asgi-send", port, _start(cmd, env, log), {}, log)
    results: dict[str, list[float]] = {}
    try:
        _wait_ready_post(srv)
        for rep in range(args.reps):
            for name in ["raw", "django"] if rep % 2 == 0 else ["django", "raw"]:
                # Per request (no events) and per streamed request: the difference is per event.
                base = _run(srv, name, args.streams, 0, args.ms)
                full = _run(srv, name, args.streams, args.events, args.ms)
                per = (full - base) / args.events * 1e6
                results.setdefault(name, []).append(per)
                results.setdefault(name + " per request", []).append(base * 1e6)
                print(f"rep {rep + 1} {name:<6} {base * 1e6:7.0f} µs/request  {per:6.1f} µs/event  load {loadavg()}")
    finally:
        stop_all()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"\nmedian server CPU: raw ASGI {med['raw']:.1f} µs/event ({med['raw per request']:.0f} µs/request), "
        f"Django path {med['django']:.1f} µs/event ({med['django per request']:.0f} µs/request); "
        f"Django adds {med['django'] - med['raw']:.1f} µs/event"
    )


def _run(srv: Server, name: str, streams: int, events: int, ms: float) -> float:
    """Server CPU seconds per request for `streams` concurrent requests of `events` events."""
    path = ("/raw" if name == "raw" else "/v1/stream") + f"?n={events}&ms={ms:g}"
    wl = Workload(name, name, path, streams, 60.0, requests=streams, chunks=events, interval_ms=ms)
    with Monitor(srv) as mon:
        data = _loadgen(srv, wl)
    if data["ok"] != streams:
        raise RuntimeError(f"{name}: {data['ok']}/{streams} ok: {data['first_error']}")
    return float(mon.cpu_s / streams)


def _wait_ready_post(srv: Server) -> None:
    # The app has no GET route; a one-event raw stream proves it is up.
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = _loadgen(srv, Workload("probe", "probe", "/raw?n=1&ms=0", 1, 5.0, requests=1, chunks=1))
        if data["ok"] == 1 and srv.proc.poll() is None:
            return
        time.sleep(0.3)
    _wait_ready(srv, "/raw", 1)


if __name__ == "__main__":
    main()
