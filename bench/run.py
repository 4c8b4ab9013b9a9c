"""Benchmark: the same workloads against the fake upstream directly, through this proxy in its
production configuration, through LiteLLM proxy and through the Portkey gateway, in one run.

    bench/run                            # the one command: installs the peers if missing, full run
    .venv/bin/python -m bench.run --reps 1 --quick   # smoke run

The proxy runs as `bin/run` runs it: granian (`--interface asgi --loop uvloop`, N workers) plus a
Celery worker with embedded beat (`celery -A proxy_project worker -B`), on PostgreSQL and Redis, so
usage records are flushed to PostgreSQL while the load runs. Every workload is repeated (`--reps`,
default 3); within a repetition the target order rotates, and the report gives per-workload
medians. Loopback only; every process it starts is in its own session and is stopped on exit
(also on errors and Ctrl-C). Results: bench/results/results.md (tables) and results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.profile_report import summarize

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PY = str(ROOT / ".venv/bin/python")
HOST = "127.0.0.1"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
# Overridable so two runs on one machine (e.g. two engineers' A/B runs) do not share state.
BENCH_DB = os.environ.get("BENCH_DB", "proxy_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
FAKE_KEY = "sk-fake-upstream"
LITELLM_KEY = "sk-bench-master"
MODEL = "bench-model"


def _free_port() -> int:
    # Fixed ports collide with whatever else runs on a shared machine; the kernel picks free ones.
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


PORTS = {name: _free_port() for name in ("fake", "proxy", "proxy2w", "profiled", "ab", "litellm", "portkey")}
PORTKEY_JS = BENCH / ".portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SERVICE_COMMS = ("postgres", "redis-server")  # shared services whose CPU is reported per run


@dataclass(frozen=True, slots=True)
class Workload:
    key: str  # short id used in the goals table
    name: str
    path: str
    concurrency: int
    duration: float
    requests: int = 10**7
    chunks: int = 0  # 0 = non-streamed
    interval_ms: float = 0.0
    dialect: str = "chat"  # chat | messages (Anthropic client; the upstream still speaks Chat)
    twin: str = ""  # translated workloads: the Chat workload of the same shape (the direct baseline)

    @property
    def expect(self) -> str:
        return "content_block_delta" if self.dialect == "messages" else ""

    def headers(self) -> dict[str, str]:
        return {"anthropic-version": "2023-06-01"} if self.dialect == "messages" else {}

    def body(self) -> str:
        text = f"bench:{self.chunks}:{self.interval_ms:g} Say hello."
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
        if self.chunks:
            body["stream"] = True
        return json.dumps(body)


def workloads(quick: bool) -> list[Workload]:
    d = 1.5 if quick else 6.0
    streams, chunks = (50, 50) if quick else (200, 200)
    return [
        Workload("W1c1", "W1 chat c=1", "/v1/chat/completions", 1, d),
        Workload("W1c50", "W1 chat c=50", "/v1/chat/completions", 50, d),
        Workload("W2c1", "W2 stream 50x10ms c=1", "/v1/chat/completions", 1, d, chunks=50, interval_ms=10),
        Workload(
            "W3",
            f"W3 {streams} streams {chunks}x20ms",
            "/v1/chat/completions",
            streams,
            30.0,
            requests=streams,
            chunks=chunks,
            interval_ms=20,
        ),
        Workload(
            "T1",
            "T messages 50x10ms c=1",
            "/v1/messages",
            1,
            d,
            chunks=50,
            interval_ms=10,
            dialect="messages",
            twin="W2c1",
        ),
        Workload(
            "T200",
            f"T messages {streams} streams {chunks}x20ms",
            "/v1/messages",
            streams,
            30.0,
            requests=streams,
            chunks=chunks,
            interval_ms=20,
            dialect="messages",
            twin="W3",
        ),
    ]


# --- processes -----------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def _tree(root: int) -> list[int]:
    parents = _parents()
    pids, frontier = [root], [root]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        pids += kids
        frontier = kids
    return pids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    headers: dict[str, str]
    log: Path
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # e.g. the Celery worker
    idle_rss_mb: float = float("nan")
    peak_rss_mb: float = 0.0
    unsupported: dict[str, str] = field(default_factory=dict)  # workload key -> first error
    uses_services: bool = False  # PostgreSQL / Redis / Celery work on its behalf (this proxy)

    def tree(self) -> list[int]:
        return _tree(self.proc.pid)

    def helper_tree(self) -> list[int]:
        return [p for h in self.helpers for p in _tree(h.pid)]

    def workers(self) -> list[int]:
        """Processes that serve requests: descendants with real memory, else the process itself."""
        kids = [p for p in self.tree()[1:] if _rss(p) > 30 * 2**20]
        return kids or [self.proc.pid]


_procs: list[subprocess.Popen[bytes]] = []


def _start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _procs.append(proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers only
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    if proc in _procs:
        _procs.remove(proc)


def stop_server(srv: Server) -> None:
    for p in [*srv.helpers, srv.proc]:
        _stop(p)


def stop_all() -> None:
    for proc in list(reversed(_procs)):
        _stop(proc)


def _wait_ready(srv: Server, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"{srv.name} exited early; see {srv.log}:\n{srv.log.read_text()[-2000:]}")
        try:
            r = httpx.get(f"http://{HOST}:{srv.port}{path}", headers=srv.headers, timeout=2)
            if r.status_code == 200 and srv.proc.poll() is None:  # ours answered, not another's
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{srv.name} not ready after {timeout:.0f} s; see {srv.log}")


def _cpu_ticks(pid: int, reaped: bool = False) -> int:
    """utime + stime of a process; with `reaped`, plus that of its exited, waited-for children
    (PostgreSQL backends that end during a run are counted through the postmaster)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if reaped else 0)
    except (OSError, IndexError):
        return 0


def _sys_ticks(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12])  # stime
    except (OSError, IndexError):
        return 0


def _ticks_by_pid(pids: list[int]) -> dict[int, int]:
    return {p: _cpu_ticks(p, reaped=True) for p in pids}


def _delta(before: dict[int, int], after: dict[int, int]) -> int:
    return sum(t - before.get(p, 0) for p, t in after.items())


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError):
        return 0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _service_pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _comm(int(e.name)) in SERVICE_COMMS]


class Monitor:
    """CPU of a server's tree (and of its helpers and the shared services) across one load, and
    the peak RSS of its worker processes, sampled every 100 ms."""

    def __init__(self, srv: Server) -> None:
        self.srv, self.pids, self.workers = srv, srv.tree(), srv.workers()
        self.helpers, self.services = srv.helper_tree(), _service_pids()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max([self.peak, *(_rss(p) for p in self.workers)])

    @staticmethod
    def _ticks(pids: list[int]) -> int:
        return sum(_cpu_ticks(p) for p in pids)

    def __enter__(self) -> Monitor:
        self.t0, self.h0 = self._ticks(self.pids), self._ticks(self.helpers)
        self.k0 = sum(_sys_ticks(p) for p in self.pids)
        self.s0 = _ticks_by_pid(self.services)
        self.m0 = _machine_ticks()
        self.peak = max(_rss(p) for p in self.workers)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_s = (self._ticks(self.pids) - self.t0) / CLK
        self.sys_s = (sum(_sys_ticks(p) for p in self.pids) - self.k0) / CLK
        self.helper_cpu_s = (self._ticks(self.helpers) - self.h0) / CLK
        self.service_cpu_s = _delta(self.s0, _ticks_by_pid(_service_pids())) / CLK
        self.machine_busy_s = (_machine_ticks()[0] - self.m0[0]) / CLK


# --- runs ------------------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    target: str
    data: dict[str, Any] = field(default_factory=dict)


def _loadgen(
    srv: Server, wl: Workload, *, duration: float | None = None, requests: int | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "host": HOST,
        "port": srv.port,
        "path": wl.path,
        "body": wl.body(),
        "headers": {**srv.headers, **wl.headers(), "content-type": "application/json"},
        "concurrency": wl.concurrency,
        "duration": duration or wl.duration,
        "requests": requests or wl.requests,
        "interval_ms": wl.interval_ms,
        "expect": wl.expect,
        "timeout": 60.0,
    }
    out = subprocess.run(
        [PY, "-m", "bench.loadgen", json.dumps(spec)], cwd=ROOT, capture_output=True, timeout=spec["duration"] + 120
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def probe(srv: Server, wl: Workload) -> str:
    """One request of this workload's kind; '' if it works, else why not (the row is then skipped:
    a peer that cannot serve a client dialect gets 'not supported', not thousands of errors)."""
    one = Workload(wl.key, wl.name, wl.path, 1, 10.0, requests=1, chunks=min(wl.chunks, 3), dialect=wl.dialect)
    data = _loadgen(srv, one)
    return "" if data["ok"] == 1 else (data["first_error"] or "failed")


def run_load(srv: Server, wl: Workload) -> Row:
    if wl.key in srv.unsupported:
        return Row(wl.name, srv.name, {"status": "not supported", "first_error": srv.unsupported[wl.key]})
    with Monitor(srv) as mon:
        data = _loadgen(srv, wl)
    data["cpu_s"] = mon.cpu_s
    data["sys_share"] = mon.sys_s / mon.cpu_s if mon.cpu_s else float("nan")  # kernel share: syscalls
    data["helper_cpu_s"] = mon.helper_cpu_s
    data["service_cpu_s"] = mon.service_cpu_s
    # CPU burnt by processes that are neither this server nor the load generator (the fake
    # upstream when it is not the target, the databases, and anything else on the machine).
    data["others_cpu_share"] = max(0.0, mon.machine_busy_s - mon.cpu_s - data["gen_cpu_s"]) / (
        data["wall_s"] * (os.cpu_count() or 1)
    )
    ok = data["ok"]
    data["cpu_ms_per_1k"] = mon.cpu_s / ok * 1e6 if ok else float("nan")
    # Per upstream event relayed (chunks asked of the fake), so passthrough and translated
    # streams are compared per the same unit of work whatever the client dialect's framing.
    data["cpu_us_per_event"] = mon.cpu_s / (ok * wl.chunks) * 1e6 if ok and wl.chunks else float("nan")
    # Celery + PostgreSQL + Redis: work the proxy causes off its request path (usage flushing,
    # state store). Peers use none of them, so it is left out of their rows.
    svc = mon.helper_cpu_s + mon.service_cpu_s
    data["svc_cpu_share"] = svc / data["wall_s"] if srv.uses_services and data["wall_s"] else float("nan")
    data["peak_rss_mb"] = mon.peak / 2**20
    srv.peak_rss_mb = max(srv.peak_rss_mb, data["peak_rss_mb"])
    data["workers"] = len(mon.workers)
    data["load"] = loadavg()
    if data["ok"] == 0 and data["unexpected"]:
        data["status"] = "not supported"
    elif data["errors"] or data["unexpected"]:
        data["status"] = f"{data['errors'] + data['unexpected']} failed"
    else:
        data["status"] = "ok"
    print(
        f"  {wl.name:<32} {srv.name:<16} {data['rps']:9.1f} req/s  ttfb p50 {data['ttfb_p50_ms']:7.2f} ms"
        f"  cpu {mon.cpu_s:6.2f} s  {data['status']}  gen cpu {data['gen_cpu_util']:.0%}"
        f"  others {data['others_cpu_share']:.0%}  load {data['load']}",
        flush=True,
    )
    if data["status"] != "ok":
        print(f"    first error: {data['first_error'][:300]}", flush=True)
    return Row(wl.name, srv.name, data)


def warm(srv: Server, wls: list[Workload], quick: bool) -> None:
    """A short load, one probe per workload kind (marks what the target cannot serve), and the
    idle RSS of its workers afterwards."""
    _loadgen(srv, Workload("warm", "warm-up", "/v1/chat/completions", 10, 1.0 if quick else 3.0))
    for wl in wls:
        why = probe(srv, wl)
        if why:
            srv.unsupported[wl.key] = why
            print(f"  {srv.name}: {wl.name} not supported ({why[:200]})", flush=True)
    time.sleep(1.0)
    srv.idle_rss_mb = max(_rss(p) for p in srv.workers()) / 2**20


# --- setup -----------------------------------------------------------------------------------


def proxy_env(var_dir: Path, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "CELERY_", "PROXY_"))}
    prom = var_dir / "prometheus"
    prom.mkdir(parents=True, exist_ok=True)
    env.update(
        DJANGO_SETTINGS_MODULE="proxy_project.settings.base",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        REDIS_URL=REDIS_URL,
        WEB_WORKERS=str(workers),
        PROXY_VAR_DIR=str(var_dir),
        PROMETHEUS_MULTIPROC_DIR=str(prom),  # as bin/run sets it
        # The fake upstream runs on 127.0.0.1, which accounts/validators.py refuses by default.
        PROXY_ALLOW_PRIVATE_UPSTREAMS="true",
    )
    return env


def _manage(src: Path, env: dict[str, str], args: list[str], log: Path) -> str:
    out = subprocess.run(
        [PY, str(src / "manage.py"), *args], cwd=src, env=env, capture_output=True, check=False, timeout=300
    )
    with log.open("ab") as f:
        f.write(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed; see {log}")
    return out.stdout.decode()


def setup_db_and_seed(src: Path, env: dict[str, str], fake_port: int, log: Path) -> str:
    import psycopg
    import redis

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    _manage(src, env, ["migrate", "--noinput"], log)
    base = f"http://{HOST}:{fake_port}/v1"
    _manage(
        src, env, ["account_add", "--label", "bench", "--base-url", base, "--api-key", FAKE_KEY, "--models", MODEL], log
    )
    return _manage(src, env, ["key_create", "--name", "bench", "--quiet"], log).strip().splitlines()[-1]


def usage_rows() -> int:
    import psycopg

    with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}") as conn:
        row = conn.execute("SELECT count(*) FROM audit_usagerecord").fetchone()
    return int(row[0]) if row else 0


def cleanup_services() -> None:
    import psycopg
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    except Exception as exc:  # best effort
        print(f"cleanup: {exc}", file=sys.stderr)


def start_proxy(name: str, port: int, src: Path, env: dict[str, str], key: str, workers: int, celery: bool) -> Server:
    """The product as bin/run starts it: granian + (optionally) a Celery worker with beat."""
    cmd = [
        str(ROOT / ".venv/bin/granian"),
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--workers-kill-timeout",
        "10",
        "proxy_project.asgi:application",
    ]
    log = RESULTS / f"{name}.log"
    genv = {**env, "PYTHONPATH": str(src)}
    srv = Server(name, port, _start(cmd, genv, log, src), {"authorization": f"Bearer {key}"}, log, uses_services=True)
    if celery:
        beat = Path(env["PROXY_VAR_DIR"]) / f"celerybeat-{name}"
        ccmd = [str(ROOT / ".venv/bin/celery"), "-A", "proxy_project", "worker", "-B", "--loglevel", "WARNING"]
        ccmd += ["--concurrency", "2", "-s", str(beat)]
        srv.helpers.append(_start(ccmd, genv, RESULTS / f"{name}-celery.log", src))
    _wait_ready(srv, "/v1/models", 60)
    return srv


def start_uvicorn(
    name: str,
    port: int,
    src: Path,
    env: dict[str, str],
    key: str,
    workers: int = 1,
    app: str = "proxy_project.asgi:application",
) -> Server:
    """uvicorn instead of granian: for the in-process profiler (bench/profiled_asgi.py) and soak."""
    cmd = [str(ROOT / ".venv/bin/uvicorn"), app, "--host", HOST, "--port", str(port)]
    cmd += ["--loop", "uvloop", "--http", "httptools", "--workers", str(workers), "--no-access-log"]
    log = RESULTS / f"{name}.log"
    srv = Server(name, port, _start(cmd, env, log, src), {"authorization": f"Bearer {key}"}, log)
    _wait_ready(srv, "/v1/models", 60)
    return srv


def start_litellm(port: int, fake_port: int) -> Server | None:
    exe = BENCH / ".litellm-venv/bin/litellm"
    if not exe.exists():
        print("LiteLLM not installed (run bench/setup_venvs.sh); skipping it")
        return None
    cfg = RESULTS / "litellm.yaml"
    cfg.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://{HOST}:{fake_port}/v1\n"
        f"      api_key: {FAKE_KEY}\n"
        "litellm_settings:\n  drop_params: true\n  telemetry: false\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DJANGO", "PROXY_"))}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
        LITELLM_LOG="ERROR",
        NO_DOCS="True",
        DISABLE_ADMIN_UI="True",
    )
    logcfg = RESULTS / "litellm-logging.json"  # no access log, like the proxy
    logcfg.write_text(
        json.dumps(
            {"version": 1, "disable_existing_loggers": False, "loggers": {"uvicorn.access": {"level": "WARNING"}}}
        )
    )
    cmd = [str(exe), "--config", str(cfg), "--host", HOST, "--port", str(port), "--num_workers", "1"]
    cmd += ["--log_config", str(logcfg)]
    log = RESULTS / "litellm.log"
    srv = Server("litellm", port, _start(cmd, env, log, ROOT), {"authorization": f"Bearer {LITELLM_KEY}"}, log)
    try:
        _wait_ready(srv, "/health/liveliness", 180)
    except RuntimeError as exc:
        print(f"LiteLLM did not start: {exc}")
        stop_server(srv)
        return None
    return srv


def start_portkey(port: int, fake_port: int) -> Server | None:
    if not PORTKEY_JS.exists() or shutil.which("node") is None:
        print("Portkey not installed (run bench/setup_venvs.sh); skipping it")
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DJANGO", "PROXY_"))}
    env["NODE_ENV"] = "production"
    cmd = ["node", str(PORTKEY_JS), f"--port={port}", "--headless"]
    headers = {
        "authorization": f"Bearer {FAKE_KEY}",
        "x-portkey-provider": "openai",
        # 127.0.0.1 is on the gateway's default trusted custom-host list.
        "x-portkey-custom-host": f"http://{HOST}:{fake_port}/v1",
    }
    log = RESULTS / "portkey.log"
    srv = Server("portkey", port, _start(cmd, env, log, BENCH / ".portkey"), headers, log)
    try:
        _wait_ready(srv, "/v1/models", 60)
    except RuntimeError as exc:
        print(f"Portkey did not start: {exc}")
        stop_server(srv)
        return None
    return srv


# --- report ----------------------------------------------------------------------------------

_NUMERIC = (
    "rps",
    "ttfb_p50_ms",
    "ttfb_p99_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "cpu_ms_per_1k",
    "cpu_us_per_event",
    "sys_share",
    "svc_cpu_share",
    "peak_rss_mb",
    "gen_cpu_util",
    "others_cpu_share",
)


def medians(rows: list[Row]) -> list[Row]:
    """One row per (workload, target): the median of each figure over the repetitions."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r.workload, r.target), []).append(r.data)
    out = []
    for (wl, target), datas in groups.items():
        d: dict[str, Any] = {"reps": len(datas)}
        for k in _NUMERIC:
            vals = [x[k] for x in datas if k in x and x[k] == x[k]]
            d[k] = statistics.median(vals) if vals else float("nan")
        d["rps_all"] = [round(x.get("rps", float("nan")), 1) for x in datas]
        bad = [x["status"] for x in datas if x["status"] != "ok"]
        d["status"] = "ok" if not bad else bad[0] if len(set(bad)) == 1 else "; ".join(bad)
        out.append(Row(wl, target, d))
    return out


def _f(v: float, nd: int = 1) -> str:
    return "n/a" if v != v else f"{v:.{nd}f}"


def table(rows: list[Row], wls: list[Workload], base_target: str = "direct") -> str:
    base = {r.workload: r.data for r in rows if r.target == base_target}
    by_key = {w.key: w.name for w in wls}
    for w in wls:  # a translated workload is compared with direct Chat of the same shape
        if w.twin and by_key.get(w.twin) in base and base.get(w.name, {}).get("status") != "ok":
            base[w.name] = base[by_key[w.twin]]
    head = (
        f"| workload | target | req/s (median; each rep) | x {base_target} | TTFB p50 / p99 ms | added TTFB p50 ms "
        "| lag p99 / max ms | CPU ms/1k req | CPU µs/event | kernel share of CPU | services CPU % of a core "
        "| peak RSS/worker MB "
        "| others' CPU | status |"
    )
    out = [head, "|" + "---|" * 14]
    nan = float("nan")
    for r in rows:
        d, b = r.data, base.get(r.workload, {})
        if "rps" not in d:
            out.append(f"| {r.workload} | {r.target} |" + " - |" * 11 + f" {d['status']} |")
            continue
        ratio = d["rps"] / b["rps"] if b.get("rps") else nan
        add50 = d["ttfb_p50_ms"] - b.get("ttfb_p50_ms", nan)
        each = ", ".join(f"{x:g}" for x in d.get("rps_all", []))
        out.append(
            f"| {r.workload} | {r.target} | {_f(d['rps'])} ({each}) | {_f(ratio, 2)} | {_f(d['ttfb_p50_ms'], 2)} / "
            f"{_f(d['ttfb_p99_ms'], 2)} | {_f(add50, 2)} | {_f(d['lag_p99_ms'])} / {_f(d['lag_max_ms'])} | "
            f"{_f(d['cpu_ms_per_1k'], 0)} | {_f(d['cpu_us_per_event'])} | {_f(d['sys_share'] * 100, 0)}% | "
            f"{_f(d['svc_cpu_share'] * 100, 0)} | "
            f"{_f(d['peak_rss_mb'], 0)} | {d.get('others_cpu_share', 0):.0%} | {d['status']} |"
        )
    return "\n".join(out)


def _get(rows: list[Row], wl: Workload, target: str, key: str) -> float:
    for r in rows:
        if r.workload == wl.name and r.target == target:
            v = r.data.get(key, float("nan"))
            return float(v) if v is not None else float("nan")
    return float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b and b == b else float("nan")


def _verdict(value: float, limit: float, *, at_least: bool = False) -> str:
    if value != value:
        return "n/a"
    return "met" if (value >= limit if at_least else value <= limit) else "**missed**"


def goals(med: list[Row], scale: list[Row], wls: list[Workload], rss: dict[str, tuple[float, float]]) -> str:
    """Issue 16's goals, judged on the medians of this run (peers shown for reference)."""
    w = {x.key: x for x in wls}
    peers = ("litellm", "portkey")

    def g(key: str, target: str, metric: str) -> float:
        return _get(med, w[key], target, metric)

    def added(key: str, t: str) -> float:
        return g(key, t, "ttfb_p50_ms") - g(key, "direct", "ttfb_p50_ms")

    def x_direct(key: str, t: str) -> float:
        return _ratio(g(key, t, "rps"), g(key, "direct", "rps"))

    out = ["| goal | this proxy | peers | verdict |", "|---|---|---|---|"]

    def line(goal: str, mine: str, theirs: str, verdict: str) -> None:
        out.append(f"| {goal} | {mine} | {theirs} | {verdict} |")

    for key, limit in (("W1c1", 1.5), ("W2c1", 2.0)):
        a = added(key, "proxy")
        line(
            f"{w[key].name}: added TTFB p50 <= +{limit} ms",
            f"+{a:.2f} ms",
            ", ".join(f"{t} +{added(key, t):.2f}" for t in peers),
            _verdict(a, limit),
        )
    mine, lite, pk = g("W1c50", "proxy", "rps"), g("W1c50", "litellm", "rps"), g("W1c50", "portkey", "rps")
    worst = min(_ratio(mine, pk) if pk == pk else 9e9, _ratio(mine, 8 * lite) if lite == lite else 9e9)
    line(
        "W1 c=50 req/s >= Portkey and >= 8x LiteLLM",
        f"{mine:.0f} ({_ratio(mine, lite):.1f}x LiteLLM, {_ratio(mine, pk):.2f}x Portkey)",
        f"LiteLLM {lite:.0f}, Portkey {pk:.0f}",
        _verdict(worst, 1.0, at_least=True),
    )
    lag = ", ".join(f"{t} {x_direct('W3', t):.2f}x / {g('W3', t, 'lag_p99_ms'):.0f} ms" for t in peers)
    r3 = x_direct("W3", "proxy")
    line(f"{w['W3'].name}: req/s >= 0.95x direct", f"{r3:.2f}x", lag, _verdict(r3, 0.95, at_least=True))
    lag3 = g("W3", "proxy", "lag_p99_ms")
    line(
        f"W3 lag p99 <= 25 ms (direct {g('W3', 'direct', 'lag_p99_ms'):.1f})", f"{lag3:.1f} ms", lag, _verdict(lag3, 25)
    )
    ev3, evt = g("W3", "proxy", "cpu_us_per_event"), g("T200", "proxy", "cpu_us_per_event")
    cpu = ", ".join(f"{t} {g('W3', t, 'cpu_us_per_event'):.0f}" for t in peers)
    line("CPU per streamed event (W3) <= 70 us", f"{ev3:.0f} us", cpu, _verdict(ev3, 70))
    cpu_t = ", ".join(f"{t} {g('T200', t, 'cpu_us_per_event'):.0f}" for t in peers)
    line(
        "translated CPU/event (T c=200) <= 1.3x passthrough (W3)",
        f"{evt:.0f} us = {_ratio(evt, ev3):.2f}x",
        cpu_t,
        _verdict(_ratio(evt, ev3), 1.3),
    )
    idle, peak = rss.get("proxy", (float("nan"), float("nan")))
    line(
        "RSS idle -> peak, one worker; peak <= 150 MB",
        f"{idle:.0f} -> {peak:.0f} MB",
        ", ".join(f"{t} {rss[t][0]:.0f} -> {rss[t][1]:.0f}" for t in peers if t in rss),
        _verdict(peak, 150),
    )
    for key in ("W1c50", "W3"):
        one, two = _get(scale, w[key], "proxy", "rps"), _get(scale, w[key], "proxy-2w", "rps")
        line(
            f"2 workers >= 1.8x one worker, {w[key].name}",
            f"{one:.1f} -> {two:.1f} req/s = {_ratio(two, one):.2f}x",
            "-",
            _verdict(_ratio(two, one), 1.8, at_least=True),
        )
    return "\n".join(out)


def machine() -> dict[str, str]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    mem = next(
        ln.split(":", 1)[1].strip()
        for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal")
    )
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def export_ref(ref: str) -> Path:
    """A clean copy of the product at `ref` (read-only git), with this bench package beside it."""
    dest = Path(tempfile.mkdtemp(prefix="proxy-bench-src-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / "bench").mkdir(exist_ok=True)
    for f in BENCH.glob("*.py"):
        shutil.copy(f, dest / "bench" / f.name)
    return dest


def source_info(ref: str | None) -> str:
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref or "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    if ref:
        return f"{ref} ({sha})"
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return f"work tree at {sha}" + (" with uncommitted changes" if dirty else "")


# --- main ------------------------------------------------------------------------------------


def alternate(targets: list[Server], wls: list[Workload], reps: int) -> list[Row]:
    """Every workload `reps` times; the target order rotates per workload and per repetition."""
    rows: list[Row] = []
    for rep in range(reps):
        print(f"-- repetition {rep + 1}/{reps} (load {loadavg()})", flush=True)
        for i, wl in enumerate(wls):
            k = (i + rep) % len(targets)
            order = targets[k:] + targets[:k]
            if (i + rep) % 2:
                order.reverse()
            rows += [run_load(t, wl) for t in order]
    return rows


def ordered_medians(rows: list[Row], targets: list[Server], wls: list[Workload]) -> list[Row]:
    names, wnames = [t.name for t in targets], [w.name for w in wls]
    return sorted(medians(rows), key=lambda r: (wnames.index(r.workload), names.index(r.target)))


def profile(src: Path, env: dict[str, str], key: str, wls: list[Workload]) -> dict[str, str]:
    folder = RESULTS / "profile"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    penv = {**env, "BENCH_PROFILE_DIR": str(folder), "PYTHONPATH": str(src)}
    srv = start_uvicorn("proxy-profiled", PORTS["profiled"], src, penv, key, app="bench.profiled_asgi:application")
    out: dict[str, str] = {}
    try:
        _loadgen(srv, Workload("warm", "warm-up", "/v1/chat/completions", 10, 3.0))
        for wl in wls:
            label = wl.key
            (folder / "on").write_text(label)
            run_load(srv, wl)
            (folder / "on").unlink()
            deadline = time.monotonic() + 10
            while not list(folder.glob(f"{label}.*.txt")) and time.monotonic() < deadline:
                time.sleep(0.1)
            out[wl.name] = summarize(sorted(folder.glob(f"{label}.*.txt")))
            print(f"\nprofile {wl.name}:\n{out[wl.name]}", flush=True)
    finally:
        (folder / "on").unlink(missing_ok=True)
        stop_server(srv)
    return out


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="team LLM proxy benchmark (loopback only)")
    ap.add_argument("--quick", action="store_true", help="short workloads (smoke run)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every workload (default 3)")
    ap.add_argument("--peers", default="litellm,portkey", help="comma list of peers to include ('' = none)")
    ap.add_argument("--only", help="comma list of workload keys to run (W1c1,W1c50,W2c1,W3,T1,T200)")
    ap.add_argument("--no-scale", action="store_true", help="skip 1 vs 2 web workers")
    ap.add_argument("--profile", action="store_true", help="also profile W1 c=50 and W3 in-process")
    ap.add_argument("--ref", help="benchmark this git ref (exported to a temp dir), not the work tree")
    ap.add_argument("--ab", help="A/B: add this git ref as a second proxy target ('proxy@REF'), alternated")
    return ap.parse_args()


def start_targets(args: argparse.Namespace, src: Path, src_b: Path | None, env: dict[str, str]) -> list[Server]:
    """direct (the fake upstream), this proxy (+ Celery), optionally proxy-B, then the peers."""
    fake_log = RESULTS / "fake.log"
    fake_cmd = [PY, "-m", "bench.fake_upstream", "--port", str(PORTS["fake"])]
    fake_proc = _start(fake_cmd, dict(os.environ), fake_log, ROOT)
    fake = Server("direct", PORTS["fake"], fake_proc, {"authorization": f"Bearer {FAKE_KEY}"}, fake_log)
    _wait_ready(fake, "/v1/models", 20)
    key = setup_db_and_seed(src, env, fake.port, RESULTS / "setup.log")
    env["BENCH_KEY"] = key
    targets = [fake, start_proxy("proxy", PORTS["proxy"], src, env, key, 1, celery=True)]
    if src_b is not None:
        targets.append(start_proxy(f"proxy@{args.ab}", PORTS["ab"], src_b, env, key, 1, celery=False))
    peers = [p for p in args.peers.split(",") if p]
    if "litellm" in peers and (lite := start_litellm(PORTS["litellm"], fake.port)) is not None:
        targets.append(lite)
    if "portkey" in peers and (pk := start_portkey(PORTS["portkey"], fake.port)) is not None:
        targets.append(pk)
    return targets


def main_section(
    targets: list[Server], wls: list[Workload], args: argparse.Namespace, results: dict[str, Any]
) -> list[Row]:
    for t in targets:
        warm(t, wls, args.quick)
    time.sleep(3.0)  # the warm-up's usage records reach PostgreSQL (beat: every 2 s)
    rows0 = usage_rows()
    print(f"\n== main: {', '.join(t.name for t in targets)}; {args.reps} repetitions ==", flush=True)
    raw = alternate(targets, wls, args.reps)
    med = ordered_medians(raw, targets, wls)
    results["raw"] = [asdict(r) for r in raw]
    results["main"] = [asdict(r) for r in med]
    results["rss"] = {t.name: (t.idle_rss_mb, t.peak_rss_mb) for t in targets}
    time.sleep(3.0)  # one more beat period: the last records reach PostgreSQL
    served = sum(r.data.get("ok", 0) + r.data.get("errors", 0) for r in raw if r.target.startswith("proxy"))
    results["usage_rows_recorded"] = f"{usage_rows() - rows0} rows for {served} proxied requests"
    print("\n" + table(med, wls), flush=True)
    return med


_SPIN = "import sys,time\nend=time.monotonic()+float(sys.argv[1]);n=0\nwhile time.monotonic()<end:\n n+=1\nprint(n)"


def _spin(processes: int, seconds: float = 1.5) -> int:
    """Loop iterations that `processes` CPU-bound Python processes complete together in `seconds`."""
    procs = [subprocess.Popen([PY, "-c", _SPIN, str(seconds)], stdout=subprocess.PIPE) for _ in range(processes)]
    return sum(int(p.communicate()[0]) for p in procs)


def cpu_parallelism(reps: int = 3) -> float:
    """How much more CPU work two busy processes get done than one, on this machine now: the
    ceiling for two web workers over one (1.0 = the second core adds nothing, 2.0 = a full
    second core), before the load generator, the fake upstream and the services take theirs."""
    ratios = []
    for _ in range(reps):
        one = _spin(1)
        ratios.append(_spin(2) / one if one else float("nan"))
    return statistics.median(ratios)


def scale_section(proxy: Server, src: Path, var_dir: Path, wls: list[Workload], args: argparse.Namespace) -> list[Row]:
    key = proxy.headers["authorization"].removeprefix("Bearer ")
    two = start_proxy("proxy-2w", PORTS["proxy2w"], src, proxy_env(var_dir, 2), key, 2, celery=False)
    try:
        scale_wls = [w for w in wls if w.key in ("W1c50", "W3")]
        warm(two, scale_wls, args.quick)
        print("\n== scale-out: 1 vs 2 web workers (Redis mode) ==", flush=True)
        rows = ordered_medians(alternate([proxy, two], scale_wls, args.reps), [proxy, two], scale_wls)
        print("\n" + table(rows, scale_wls, base_target="proxy"), flush=True)
        return rows
    finally:
        stop_server(two)


def main() -> None:
    args = _args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "reps": args.reps, "load_start": loadavg()}
    print("machine:", results["machine"], "| load", results["load_start"], flush=True)
    started = time.monotonic()
    var_dir = Path(tempfile.mkdtemp(prefix="proxy-bench-var-"))
    src = export_ref(args.ref) if args.ref else ROOT
    src_b = export_ref(args.ab) if args.ab else None
    results["source"] = source_info(args.ref)
    if args.ab:
        results["source_b"] = source_info(args.ab)
    print("source:", results["source"], "| B:", results.get("source_b", "-"), flush=True)
    wls = [w for w in workloads(args.quick) if not args.only or w.key in args.only.split(",")]
    scale_rows: list[Row] = []
    try:
        env = proxy_env(var_dir, 1)
        targets = start_targets(args, src, src_b, env)
        med = main_section(targets, wls, args, results)
        if not args.no_scale:
            results["cpu_parallelism"] = cpu_parallelism()
            print(f"two busy processes get {results['cpu_parallelism']:.2f}x the work of one", flush=True)
            scale_rows = scale_section(targets[1], src, var_dir, wls, args)
            results["scale"] = [asdict(r) for r in scale_rows]
        if args.profile:
            stop_server(targets[1])
            print("\n== profile (in-process sampler, uvicorn, 1 worker) ==", flush=True)
            prof = [w for w in wls if w.key in ("W1c50", "W3", "T200")]
            results["profile"] = profile(src, env, env["BENCH_KEY"], prof)
    finally:
        stop_all()
        cleanup_services()
        shutil.rmtree(var_dir, ignore_errors=True)
        for d in (src if args.ref else None, src_b):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
    results["load_end"] = loadavg()
    results["seconds"] = round(time.monotonic() - started)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=1))
    report = markdown(results, med, scale_rows, wls)
    (RESULTS / "results.md").write_text(report)
    print("\n" + report)
    print(f"\ndone in {results['seconds']} s; results in {RESULTS / 'results.md'} and results.json")


def _cores_line(row: Row) -> str:
    d = row.data
    cores = d["rps"] * d["cpu_ms_per_1k"] / 1e6
    per_core = d["rps"] / cores if cores else float("nan")
    return f"- {row.workload}, {row.target}: the web workers used {cores:.2f} cores ({per_core:.0f} req/s per core)"


def markdown(results: dict[str, Any], med: list[Row], scale: list[Row], wls: list[Workload]) -> str:
    m = results["machine"]
    parts = [
        f"# bench/run results ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"- source: {results['source']}" + (f"; B = {results['source_b']}" if "source_b" in results else ""),
        f"- machine: {m['nproc']} cores, {m['cpu']}, {m['memory']}, Python {m['python']}, kernel {m['kernel']}",
        f"- load average (1/5/15 min): {results['load_start']} at start, {results['load_end']} at the end; "
        f"{results['reps']} repetitions, medians; {results['seconds']} s",
        f"- usage records written to PostgreSQL by the Celery worker during the main section: "
        f"{results.get('usage_rows_recorded', 'n/a')}",
        "",
        "## Workloads (medians)",
        "",
        table(med, wls),
        "",
        "## RSS per worker, idle (after warm-up) → peak (MB)",
        "",
        "| target | idle | peak |",
        "|---|---|---|",
        *(f"| {t} | {i:.0f} | {p:.0f} |" for t, (i, p) in results.get("rss", {}).items()),
    ]
    if scale:
        parts += ["", "## 1 vs 2 web workers (Redis mode)", "", table(scale, wls, base_target="proxy"), ""]
        parts += [_cores_line(r) for r in scale if "rps" in r.data]
        parts.append(
            f"- two CPU-bound processes get {results.get('cpu_parallelism', float('nan')):.2f}x the work of one on "
            "this machine (measured before the scale section): the ceiling for two workers over one"
        )
    if not results["quick"] and {w.key for w in wls} >= {"W1c1", "W1c50", "W2c1", "W3", "T200"}:
        parts += ["", "## Goals (issue 16)", "", goals(med, scale, wls, results.get("rss", {}))]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
