"""Benchmark: the same workloads against the fake upstream directly, through this proxy
(uvicorn, PostgreSQL + Redis) and through LiteLLM proxy; plus uvicorn vs granian, 1 vs 2
workers and an in-process profile.

    bench/setup_venvs.sh                 # once: bench-only venvs (granian, LiteLLM)
    .venv/bin/python -m bench.run        # full run (~6 min); --quick: smoke run (< 60 s)

Loopback only; every process it starts is stopped on exit (also on errors and Ctrl-C).
Results: printed tables and bench/results/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
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
BENCH_DB = "proxy_bench"
REDIS_URL = "redis://127.0.0.1:6379/13"
FAKE_KEY = "sk-fake-upstream"
LITELLM_KEY = "sk-bench-master"
MODEL = "bench-model"
PORTS = {"fake": 9301, "proxy": 9311, "granian": 9312, "proxy2w": 9313, "profiled": 9314, "litellm": 9321}
CLK = os.sysconf("SC_CLK_TCK")
SRC = {"dir": ROOT}  # where the product under test runs from (the work tree, or an exported --ref)
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    path: str
    concurrency: int
    duration: float
    requests: int = 10**7
    chunks: int = 0  # 0 = non-streamed
    interval_ms: float = 0.0
    responses: bool = False

    def body(self) -> str:
        if self.responses:
            return json.dumps({"model": MODEL, "stream": True, "input": f"bench:{self.chunks}:{self.interval_ms:g}"})
        msg = {"role": "user", "content": f"bench:{self.chunks}:{self.interval_ms:g} Say hello."}
        body: dict[str, Any] = {"model": MODEL, "messages": [msg], "max_tokens": 16}
        if self.chunks:
            body["stream"] = True
        return json.dumps(body)


def workloads(quick: bool) -> list[Workload]:
    d = 1.5 if quick else 8.0
    w3 = (50, 100) if quick else (200, 200)  # (streams, chunks)
    return [
        Workload("W1 chat c=1", "/v1/chat/completions", 1, d),
        Workload("W1 chat c=50", "/v1/chat/completions", 50, d),
        Workload("W2 stream 50x10ms c=1", "/v1/chat/completions", 1, d, chunks=50, interval_ms=10),
        Workload("W2 stream 50x10ms c=100", "/v1/chat/completions", 100, d, chunks=50, interval_ms=10),
        Workload(
            f"W3 {w3[0]} streams {w3[1]}x20ms",
            "/v1/chat/completions",
            w3[0],
            30.0,
            requests=w3[0],
            chunks=w3[1],
            interval_ms=20,
        ),
        Workload("W4 responses 50x10ms c=50", "/v1/responses", 50, d, chunks=50, interval_ms=10, responses=True),
    ]


# --- processes -----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    headers: dict[str, str]
    log: Path

    def tree(self) -> list[int]:
        """The server's pids: the process itself and all its descendants."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        pids, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            kids = [p for p, pp in parents.items() if pp in frontier]
            pids += kids
            frontier = kids
        return pids

    def workers(self) -> list[int]:
        """Processes that serve requests: children with real memory, else the process itself."""
        kids = [p for p in self.tree()[1:] if _rss(p) > 40 * 2**20]
        return kids or [self.proc.pid]


_procs: list[subprocess.Popen[bytes]] = []


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(cmd, cwd=SRC["dir"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{srv.name} not ready after {timeout:.0f} s; see {srv.log}")


def _cpu_ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, IndexError):
        return 0


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


class Monitor:
    """CPU ticks of a server tree across a run and the peak RSS of its worker processes."""

    def __init__(self, srv: Server) -> None:
        self.srv, self.pids, self.workers = srv, srv.tree(), srv.workers()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max([self.peak, *(_rss(p) for p in self.workers)])

    def __enter__(self) -> Monitor:
        self.t0 = sum(_cpu_ticks(p) for p in self.pids)
        self.m0 = _machine_ticks()
        self.peak = max(_rss(p) for p in self.workers)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_s = (sum(_cpu_ticks(p) for p in self.pids) - self.t0) / CLK
        m1 = _machine_ticks()
        self.machine_busy_s = (m1[0] - self.m0[0]) / CLK


# --- runs ------------------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    target: str
    data: dict[str, Any] = field(default_factory=dict)


def run_load(srv: Server, wl: Workload, *, duration: float | None = None) -> Row:
    spec = {
        "host": HOST,
        "port": srv.port,
        "path": wl.path,
        "body": wl.body(),
        "headers": {**srv.headers, "content-type": "application/json"},
        "concurrency": wl.concurrency,
        "duration": duration or wl.duration,
        "requests": wl.requests,
        "interval_ms": wl.interval_ms,
        "expect": "response.output_text.delta" if wl.responses else "",
        "timeout": 60.0,
    }
    with Monitor(srv) as mon:
        out = subprocess.run(
            [PY, "-m", "bench.loadgen", json.dumps(spec)], cwd=ROOT, capture_output=True, timeout=spec["duration"] + 120
        )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr.decode()[-2000:]}")
    data = json.loads(out.stdout.decode().strip().splitlines()[-1])
    data["cpu_s"] = mon.cpu_s
    # CPU burnt by processes that are neither this server nor the load generator (the fake
    # upstream when it is not the target, the databases, and anything else on the machine).
    data["others_cpu_share"] = max(0.0, mon.machine_busy_s - mon.cpu_s - data["gen_cpu_s"]) / (
        data["wall_s"] * (os.cpu_count() or 1)
    )
    data["cpu_ms_per_1k"] = mon.cpu_s / data["ok"] * 1e6 if data["ok"] else float("nan")
    data["cpu_us_per_event"] = mon.cpu_s / data["events"] * 1e6 if data["events"] else float("nan")
    data["peak_rss_mb"] = mon.peak / 2**20
    data["workers"] = len(mon.workers)
    if data["ok"] == 0 and data["unexpected"]:
        data["status"] = "not yet supported"
    elif data["errors"] or data["unexpected"]:
        data["status"] = f"{data['errors'] + data['unexpected']} failed"
    else:
        data["status"] = "ok"
    print(
        f"  {wl.name:<28} {srv.name:<16} {data['rps']:9.1f} req/s  ttfb p50 {data['ttfb_p50_ms']:7.2f} ms"
        f"  cpu {mon.cpu_s:6.2f} s  {data['status']}  gen cpu {data['gen_cpu_util']:.0%}"
        f"  others {data['others_cpu_share']:.0%}",
        flush=True,
    )
    if data["status"] != "ok":
        print(f"    first error: {data['first_error'][:300]}", flush=True)
    return Row(wl.name, srv.name, data)


def warm(srv: Server, quick: bool) -> None:
    run_load(srv, Workload("warm-up", "/v1/chat/completions", 10, 1.0 if quick else 3.0))


# --- setup -----------------------------------------------------------------------------------


def proxy_env(var_dir: Path, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="proxy_project.settings.base",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        REDIS_URL=REDIS_URL,
        WEB_WORKERS=str(workers),
        PROXY_VAR_DIR=str(var_dir),
        # The fake upstream runs on 127.0.0.1, which accounts/validators.py refuses by default.
        PROXY_ALLOW_PRIVATE_UPSTREAMS="true",
    )
    return env


def setup_db_and_seed(env: dict[str, str], fake_port: int, log: Path) -> str:
    import psycopg
    import redis

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    redis.Redis.from_url(REDIS_URL).flushdb()
    with log.open("ab") as out:
        manage = [PY, str(SRC["dir"] / "manage.py")]
        subprocess.run(
            [*manage, "migrate", "--noinput"], cwd=SRC["dir"], env=env, stdout=out, stderr=out, check=True, timeout=300
        )
        subprocess.run(
            [
                *manage,
                "account_add",
                "--label",
                "bench",
                "--base-url",
                f"http://{HOST}:{fake_port}/v1",
                "--api-key",
                FAKE_KEY,
                "--models",
                MODEL,
            ],
            cwd=SRC["dir"],
            env=env,
            stdout=out,
            stderr=out,
            check=True,
            timeout=120,
        )
        key = (
            subprocess.run(
                [*manage, "key_create", "--name", "bench", "--quiet"],
                cwd=SRC["dir"],
                env=env,
                capture_output=True,
                check=True,
                timeout=120,
            )
            .stdout.decode()
            .strip()
        )
    return key.splitlines()[-1]


def cleanup_services() -> None:
    import psycopg
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    except Exception as exc:  # best effort
        print(f"cleanup: {exc}", file=sys.stderr)


def start_uvicorn(
    name: str, port: int, env: dict[str, str], key: str, workers: int, app: str = "proxy_project.asgi:application"
) -> Server:
    cmd = [
        str(ROOT / ".venv/bin/uvicorn"),
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    log = RESULTS / f"{name}.log"
    srv = Server(name, port, _start(cmd, env, log), {"authorization": f"Bearer {key}"}, log)
    _wait_ready(srv, "/v1/models", 60)
    return srv


def start_granian(port: int, env: dict[str, str], key: str, workers: int) -> Server | None:
    exe = BENCH / ".tools-venv/bin/granian"
    if not exe.exists():
        print("granian not installed (run bench/setup_venvs.sh); skipping the ASGI comparison")
        return None
    site = next((ROOT / ".venv/lib").glob("python3*/site-packages"))
    genv = {**env, "PYTHONPATH": f"{SRC['dir']}:{site}"}
    cmd = [
        str(exe),
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
        "proxy_project.asgi:application",
    ]
    log = RESULTS / "granian.log"
    srv = Server("proxy-granian", port, _start(cmd, genv, log), {"authorization": f"Bearer {key}"}, log)
    _wait_ready(srv, "/v1/models", 60)
    return srv


def start_litellm(port: int, fake_port: int, workers: int) -> Server | None:
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
    logcfg = RESULTS / "litellm-logging.json"  # no access log, like the proxy's --no-access-log
    logcfg.write_text(
        json.dumps(
            {"version": 1, "disable_existing_loggers": False, "loggers": {"uvicorn.access": {"level": "WARNING"}}}
        )
    )
    cmd = [
        str(exe),
        "--config",
        str(cfg),
        "--host",
        HOST,
        "--port",
        str(port),
        "--num_workers",
        str(workers),
        "--log_config",
        str(logcfg),
    ]
    log = RESULTS / "litellm.log"
    srv = Server("litellm", port, _start(cmd, env, log), {"authorization": f"Bearer {LITELLM_KEY}"}, log)
    try:
        _wait_ready(srv, "/health/liveliness", 120)
    except RuntimeError as exc:
        print(f"LiteLLM did not start: {exc}")
        _stop(srv.proc)
        return None
    return srv


# --- report ----------------------------------------------------------------------------------


def _f(v: float, nd: int = 1) -> str:
    return "n/a" if v != v else f"{v:.{nd}f}"


def table(rows: list[Row], base_target: str = "direct") -> str:
    base = {r.workload: r.data for r in rows if r.target == base_target}
    head = (
        "| workload | target | req/s | x direct | TTFB p50 / p99 ms | added TTFB p50 / p99 ms "
        "| lag p99 / max ms | added lag p99 / max ms | CPU ms/1k req | CPU µs/event | peak RSS/worker MB "
        "| gen CPU | others' CPU | status |"
    )
    out = [head, "|" + "---|" * 14]
    for r in rows:
        d, b = r.data, base.get(r.workload, {})
        ratio = d["rps"] / b["rps"] if b.get("rps") else float("nan")
        add50 = d["ttfb_p50_ms"] - b.get("ttfb_p50_ms", float("nan"))
        add99 = d["ttfb_p99_ms"] - b.get("ttfb_p99_ms", float("nan"))
        lag_a = d["lag_p99_ms"] - b.get("lag_p99_ms", float("nan"))
        lag_m = d["lag_max_ms"] - b.get("lag_max_ms", float("nan"))
        out.append(
            f"| {r.workload} | {r.target} | {_f(d['rps'])} | {_f(ratio, 2)} | {_f(d['ttfb_p50_ms'], 2)} / "
            f"{_f(d['ttfb_p99_ms'], 2)} | {_f(add50, 2)} / {_f(add99, 2)} | {_f(d['lag_p99_ms'])} / "
            f"{_f(d['lag_max_ms'])} | {_f(lag_a)} / {_f(lag_m)} | {_f(d['cpu_ms_per_1k'], 0)} | "
            f"{_f(d['cpu_us_per_event'])} | {_f(d['peak_rss_mb'], 0)} | {d['gen_cpu_util']:.0%} | "
            f"{d.get('others_cpu_share', 0):.0%} | {d['status']} |"
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


def alternate(targets: list[Server], wls: list[Workload]) -> list[Row]:
    rows: list[Row] = []
    for i, wl in enumerate(wls):
        order = targets[i % len(targets) :] + targets[: i % len(targets)]
        if i % 2:
            order.reverse()
        rows += [run_load(t, wl) for t in order]
    names = [t.name for t in targets]
    return sorted(rows, key=lambda r: ([w.name for w in wls].index(r.workload), names.index(r.target)))


def profile(env: dict[str, str], key: str, wls: list[Workload], quick: bool) -> dict[str, str]:
    folder = RESULTS / "profile"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    penv = {**env, "BENCH_PROFILE_DIR": str(folder)}
    srv = start_uvicorn("proxy-profiled", PORTS["profiled"], penv, key, 1, app="bench.profiled_asgi:application")
    out: dict[str, str] = {}
    try:
        warm(srv, quick)
        for wl in wls:
            label = wl.name.split()[0] + "-c" + str(wl.concurrency)
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
        _stop(srv.proc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="team LLM proxy benchmark (loopback only)")
    ap.add_argument("--quick", action="store_true", help="short smoke run: direct + proxy, < 60 s")
    ap.add_argument("--workers", type=int, default=1, help="web workers of the proxy and LiteLLM (default 1)")
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--no-asgi", action="store_true", help="skip uvicorn vs granian")
    ap.add_argument("--no-scale", action="store_true", help="skip 1 vs 2 workers")
    ap.add_argument("--no-profile", action="store_true", help="skip the in-process profile")
    ap.add_argument("--ref", help="benchmark this git ref (exported to a temp dir), not the work tree")
    ap.add_argument("--only", choices=["main", "asgi", "scale", "profile"], help="run one section")
    args = ap.parse_args()
    quick = args.quick
    want = {args.only} if args.only else {"main"} | (set() if quick else {"asgi", "scale", "profile"})
    want -= {name for name in ("asgi", "scale", "profile") if getattr(args, f"no_{name}")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "workers": args.workers}
    print("machine:", results["machine"], flush=True)
    started = time.monotonic()
    var_dir = Path(tempfile.mkdtemp(prefix="proxy-bench-var-"))
    if args.ref:
        SRC["dir"] = export_ref(args.ref)
    results["source"] = source_info(args.ref)
    print("source:", results["source"], flush=True)
    try:
        fake = Server(
            "direct",
            PORTS["fake"],
            _start(
                [PY, "-m", "bench.fake_upstream", "--port", str(PORTS["fake"])], dict(os.environ), RESULTS / "fake.log"
            ),
            {"authorization": f"Bearer {FAKE_KEY}"},
            RESULTS / "fake.log",
        )
        _wait_ready(fake, "/v1/models", 20)
        env = proxy_env(var_dir, args.workers)
        key = setup_db_and_seed(env, fake.port, RESULTS / "setup.log")
        proxy = start_uvicorn("proxy", PORTS["proxy"], env, key, args.workers)
        targets = [fake, proxy]
        if "main" in want and not (quick or args.no_litellm):
            lite = start_litellm(PORTS["litellm"], fake.port, args.workers)
            if lite is not None:
                targets.append(lite)
        for t in targets if want != {"profile"} else []:
            warm(t, quick)
        wls = workloads(quick)
        if "main" in want:
            print("\n== main: direct vs proxy vs LiteLLM ==", flush=True)
            rows = alternate(targets, wls)
            results["main"] = [asdict(r) for r in rows]
            print("\n" + table(rows), flush=True)

        if "asgi" in want:
            gran = start_granian(PORTS["granian"], env, key, args.workers)
            if gran is not None:
                warm(gran, quick)
                print("\n== ASGI server: uvicorn vs granian (through the proxy) ==", flush=True)
                arows = alternate([proxy, gran], wls[:4])
                results["asgi"] = [asdict(r) for r in arows]
                print("\n" + table(arows, base_target="proxy"), flush=True)
                _stop(gran.proc)

        if "scale" in want:
            env2 = proxy_env(var_dir, 2)
            two = start_uvicorn("proxy-2-workers", PORTS["proxy2w"], env2, key, 2)
            warm(two, quick)
            print("\n== scale-out: W1 c=50 with 1 and 2 workers ==", flush=True)
            srows = alternate([proxy, two], [wls[1], wls[1]])
            results["scale"] = [asdict(r) for r in srows]
            print("\n" + table(srows, base_target="proxy"), flush=True)
            _stop(two.proc)

        if "profile" in want:
            _stop(proxy.proc)
            print("\n== profile (in-process sampler, 1 worker) ==", flush=True)
            results["profile"] = profile(env, key, [wls[1], wls[3]], quick)
    finally:
        stop_all()
        cleanup_services()
        for p in sorted(var_dir.glob("**/*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        var_dir.rmdir()
        if args.ref:
            shutil.rmtree(SRC["dir"], ignore_errors=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\ndone in {time.monotonic() - started:.0f} s; results in {RESULTS / 'results.json'}")


if __name__ == "__main__":
    main()
