"""What ONE request costs the proxy: CPU, Redis round trips, database queries, where the time goes.

Wall-clock figures on a shared machine are noise; these are not (load barely changes them):

    # production configuration (PostgreSQL + Redis), your own database and Redis db:
    .venv/bin/python -m bench.request_cost --database-url postgres://postgres@127.0.0.1:5432/perf \\
        --redis-url redis://127.0.0.1:6379/4 --n 2000

- `inproc`: the ASGI application called in this process (no HTTP server), requests one after
  another (c=1) against the bench's fake upstream (`bench/fake_upstream.py`, its own process).
  Counts per request: Redis round trips (socket writes; a pipeline or a script is one) and the
  commands in them, SQL queries, and this process's CPU (`time.process_time`).
  `--profile` adds a cProfile table of one workload.
- `granian`: the product as `bin/run` serves it (granian, uvloop, one worker); CPU of the worker
  process from `/proc/<pid>/stat` (utime + stime) around N keep-alive requests at c=1.

The seeded key has no limits (as in `bench/run`) unless `--limits` gives it token and request
limits, which adds the reservation (one Lua script) and its settlement.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import io
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")
HOST = "127.0.0.1"
MODEL = "bench-model"
CLK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _body(stream_events: int) -> bytes:
    text = f"bench:{stream_events or 1}:0 Say hello."
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    if stream_events:
        body["stream"] = True
    return json.dumps(body).encode()


def _env(args: argparse.Namespace, var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "CELERY_", "PROXY_"))}
    prom = var_dir / "prometheus"
    prom.mkdir(parents=True, exist_ok=True)
    for f in prom.glob("*.db"):
        f.unlink()
    env.update(
        DJANGO_SETTINGS_MODULE="proxy_project.settings.base",
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        PROXY_VAR_DIR=str(var_dir),
        PROMETHEUS_MULTIPROC_DIR=str(prom),
        PROXY_ALLOW_PRIVATE_UPSTREAMS="true",
        PYTHONPATH=str(ROOT),
    )
    return env


def _manage(env: dict[str, str], *argv: str) -> str:
    out = subprocess.run([PY, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, check=False, timeout=300)
    if out.returncode:
        raise RuntimeError(f"manage.py {argv[0]}: {out.stderr.decode()[-2000:]}")
    return out.stdout.decode()


def seed(args: argparse.Namespace, env: dict[str, str], fake_port: int) -> str:
    import psycopg
    import redis

    db = urlsplit(args.database_url).path.lstrip("/")
    admin = args.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    redis.Redis.from_url(args.redis_url).flushdb()
    _manage(env, "migrate", "--noinput")
    base = f"http://{HOST}:{fake_port}/v1"
    _manage(env, "account_add", "--label", "bench", "--base-url", base, "--api-key", "sk-fake", "--models", MODEL)
    key = _manage(env, "key_create", "--name", "bench", "--quiet").strip().splitlines()[-1]
    if args.limits:
        code = (
            "from accounts.models import ClientKey as K;"
            "K.objects.update(requests_per_minute=10**9, tokens_per_day=10**12)"
        )
        _manage(env, "shell", "-c", code)
    return key


# --------------------------------------------------------------------------- in-process


class Counters:
    def __init__(self) -> None:
        self.round_trips = 0
        self.commands: collections.Counter[str] = collections.Counter()
        self.queries: collections.Counter[str] = collections.Counter()

    def install(self) -> None:
        from django.db.backends import utils
        from redis.asyncio import connection

        counters = self
        send = connection.AbstractConnection.send_packed_command
        pack1 = connection.AbstractConnection.pack_command
        packn = connection.AbstractConnection.pack_commands

        async def send_packed_command(conn: Any, command: Any, check_health: bool = True) -> None:
            counters.round_trips += 1
            await send(conn, command, check_health)

        def pack_command(conn: Any, *a: Any) -> Any:
            counters.commands[str(a[0]) if a else "?"] += 1
            return pack1(conn, *a)

        def pack_commands(conn: Any, commands: Any) -> Any:
            commands = list(commands)
            for c in commands:
                counters.commands["pipeline:" + str(c[0])] += 1
            return packn(conn, commands)

        connection.AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign,assignment]
        connection.AbstractConnection.pack_command = pack_command  # type: ignore[method-assign,assignment]
        connection.AbstractConnection.pack_commands = pack_commands  # type: ignore[method-assign,assignment]
        execute = utils.CursorWrapper.execute

        def sql(cursor: Any, q: str, params: Any = None) -> Any:
            counters.queries[q.split(" WHERE")[0][:90]] += 1
            return execute(cursor, q, params)

        utils.CursorWrapper.execute = sql  # type: ignore[method-assign,assignment]

    def snapshot(self) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
        return self.round_trips, self.commands.copy(), self.queries.copy()


# (module, attribute, label): the steps of one request, timed where routing.proxy / dispatch call them.
_STEPS = (
    ("routing.proxy", "proxy_handle", "proxy_handle (everything below, excl. Django/ninja/ASGI)"),
    ("routing.proxy", "client_authenticate", "auth: key lookup (cached)"),
    ("routing.proxy", "body_read", "intake: JSON parse + validation"),
    ("routing.proxy", "money_limits", "money budgets lookup (cached)"),
    ("routing.proxy", "limits_reserve", "key limits: reserve (Redis script)"),
    ("routing.proxy", "catalog_resolve", "catalog: model -> accounts (cached)"),
    ("routing.proxy", "dispatch_open", "dispatch: selection + upstream open"),
    ("routing.dispatch", "cooldown_check", "  selection state: cooldowns/affinity/quota (Redis MGET)"),
    ("routing.dispatch", "_attempt", "  upstream request until headers/first event (httpx+aiohttp)"),
    ("routing.dispatch", "_reward", "  success bookkeeping"),
    ("routing.proxy", "_whole_reply", "non-stream: body read + JSON reply"),
    ("routing.proxy", "limits_settle", "key limits: settle (Redis script)"),
    ("routing.proxy", "usage_record", "usage record: clean + serialize + RPUSH (+ settlement, when merged)"),
    ("routing.proxy", "metrics_record", "metrics (Prometheus, multiprocess files)"),
)


class Breakdown:
    """Inclusive CPU per step (`time.process_time` around each call; at c=1 whatever runs
    while a step awaits belongs to the same request)."""

    def __init__(self) -> None:
        self.cpu: collections.Counter[str] = collections.Counter()

    def install(self) -> None:
        import importlib
        import inspect

        for module_name, attr, label in _STEPS:
            module = importlib.import_module(module_name)
            fn = getattr(module, attr, None)
            if fn is None:  # e.g. an older or newer version of the code without this step
                continue
            setattr(module, attr, self._wrap(fn, label, inspect.iscoroutinefunction(fn)))

    def _wrap(self, fn: Any, label: str, is_async: bool) -> Any:
        cpu = self.cpu

        if is_async:

            async def timed_async(*a: Any, **kw: Any) -> Any:
                t = time.process_time()
                try:
                    return await fn(*a, **kw)
                finally:
                    cpu[label] += time.process_time() - t

            return timed_async

        def timed(*a: Any, **kw: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                cpu[label] += time.process_time() - t

        return timed


async def asgi_request(app: Any, key: str, body: bytes) -> tuple[int, bytes]:
    done = asyncio.Event()
    sent = False
    out: list[bytes] = []
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": (HOST, 5555),
        "server": (HOST, 8000),
    }
    await app(scope, receive, send)
    return status, b"".join(out)


async def _settle() -> None:
    # Let the request's background work (usage record, limits settlement, metrics) finish.
    from routing import proxy

    for _ in range(100):
        if not proxy._tasks:
            return
        await asyncio.sleep(0)
    await asyncio.gather(*list(proxy._tasks), return_exceptions=True)


async def inproc(args: argparse.Namespace, key: str) -> dict[str, Any]:
    from proxy_project.asgi import application

    counters = Counters()
    counters.install()
    breakdown = Breakdown()
    if args.breakdown:
        breakdown.install()
    results: dict[str, Any] = {}
    for name, events in (("non-stream", 0), ("stream", args.events)):
        body = _body(events)
        for _ in range(args.warmup):
            status, _ = await asgi_request(application, key, body)
            assert status == 200, status
            await _settle()
        rt0, cmd0, q0 = counters.snapshot()
        steps0 = breakdown.cpu.copy()
        prof = cProfile.Profile() if args.profile == name else None
        cpu0 = time.process_time()
        if prof:
            prof.enable()
        for _ in range(args.n):
            status, payload = await asgi_request(application, key, body)
            await _settle()
        if prof:
            prof.disable()
        cpu = time.process_time() - cpu0
        assert status == 200 and payload, (status, payload[:200])
        rt1, cmd1, q1 = counters.snapshot()
        n = args.n
        results[name] = {
            "cpu_ms_per_request": round(cpu * 1000 / n, 3),
            "redis_round_trips_per_request": round((rt1 - rt0) / n, 3),
            "redis_commands_per_request": {k: round(v / n, 3) for k, v in (cmd1 - cmd0).items()},
            "sql_queries_per_request": {k: round(v / n, 4) for k, v in (q1 - q0).items()},
        }
        if args.breakdown:
            steps = breakdown.cpu - steps0
            results[name]["cpu_us_per_step"] = {label: round(steps[label] * 1e6 / n, 1) for _, _, label in _STEPS}
        if prof:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats(args.sort).print_stats(args.top)
            results[name]["profile"] = s.getvalue()
            if args.dump:
                prof.dump_stats(args.dump)
    return results


# --------------------------------------------------------------------------- granian


def _ticks(pid: int) -> int:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p.name))
    return kids


def granian(args: argparse.Namespace, env: dict[str, str], key: str) -> dict[str, Any]:
    import httpx

    port = _free_port()
    cmd = [str(ROOT / ".venv/bin/granian"), "--interface", "asgi", "--loop", "uvloop", "--host", HOST]
    cmd += ["--port", str(port), "--workers", "1", "proxy_project.asgi:application"]
    log = open(Path(args.var_dir) / "granian.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results: dict[str, Any] = {}
    try:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        with httpx.Client(base_url=f"http://{HOST}:{port}", headers=headers, timeout=30) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/v1/models").status_code == 200:
                        break
                time.sleep(0.2)
            workers = [p for p in _children(proc.pid)] or [proc.pid]
            for name, events in (("non-stream", 0), ("stream", args.events)):
                body = _body(events)
                for _ in range(args.warmup):
                    client.post("/v1/chat/completions", content=body).raise_for_status()
                for _rep in range(args.reps):
                    t0 = sum(_ticks(p) for p in [proc.pid, *workers])
                    w0 = time.perf_counter()
                    for _ in range(args.n):
                        r = client.post("/v1/chat/completions", content=body)
                        assert r.status_code == 200
                    time.sleep(0.05)  # background settlement after the last answer
                    t1 = sum(_ticks(p) for p in [proc.pid, *workers])
                    wall = time.perf_counter() - w0
                    ttfb = []
                    for _ in range(min(args.n, 200)):  # time to the first body byte, not CPU
                        t = time.perf_counter()
                        with client.stream("POST", "/v1/chat/completions", content=body) as r:
                            chunks = r.iter_raw()
                            next(chunks)
                            ttfb.append(time.perf_counter() - t)
                            for _chunk in chunks:
                                pass
                    ttfb.sort()
                    results.setdefault(name, []).append(
                        {
                            "cpu_ms_per_request": round((t1 - t0) * 1000 / CLK / args.n, 3),
                            "wall_ms_per_request": round(wall * 1000 / args.n, 3),
                            "ttfb_ms_p50": round(ttfb[len(ttfb) // 2] * 1000, 3),
                        }
                    )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--mode", choices=("inproc", "granian", "both"), default="both")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3, help="granian: repetitions of N requests")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--events", type=int, default=50, help="events per streamed answer (sent at once)")
    ap.add_argument("--limits", action="store_true", help="give the key token/request limits")
    ap.add_argument("--breakdown", action="store_true", help="inproc: CPU per step of the request")
    ap.add_argument("--profile", choices=("non-stream", "stream"), default=None)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--dump", default="", help="write the profile's pstats to this file")
    ap.add_argument("--var-dir", default=str(ROOT / "var/request_cost"))
    args = ap.parse_args()
    var = Path(args.var_dir)
    var.mkdir(parents=True, exist_ok=True)
    env = _env(args, var)
    fake_port = _free_port()
    fake = subprocess.Popen(
        [PY, "-m", "bench.fake_upstream", "--port", str(fake_port)], cwd=ROOT, env=env, start_new_session=True
    )
    out: dict[str, Any] = {}
    try:
        time.sleep(0.5)
        key = seed(args, env, fake_port)
        if args.mode in ("granian", "both"):
            out["granian"] = granian(args, env, key)
        if args.mode in ("inproc", "both"):
            os.environ.update(env)
            sys.path.insert(0, str(ROOT))
            import uvloop

            out["inproc"] = uvloop.run(inproc(args, key))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fake.pid, signal.SIGTERM)
        fake.wait(timeout=10)
    profiles = {k: v.pop("profile") for k, v in out.get("inproc", {}).items() if "profile" in v}
    print(json.dumps(out, indent=1))
    for name, text in profiles.items():
        print(f"--- profile: {name}\n{text}")


if __name__ == "__main__":
    main()
