"""Codex CLI sessions over HTTP and over the client WebSocket, through the proxy in production
configuration (granian + Celery on PostgreSQL + Redis, as bin/run starts it), against the fake
Codex backend (tests/fakes/codex.py, in its own process) with Codex-CLI-sized payloads.

    .venv/bin/python -m bench.ws_bench session              # 30-turn session, HTTP vs WebSocket
    .venv/bin/python -m bench.ws_bench soak --minutes 10    # 200 sockets held, >= 5 turns each

`session`: the same 30 model requests (15 prompts, each a tool call then its answer; a 36 KB
opening: base prompt, skills, environment, 10 tools) sent the way Codex CLI 0.169 sends them:
over HTTP the whole transcript every time; over the WebSocket one socket, a `generate: false`
prewarm, then `previous_response_id` + the new items. Each mode runs through the proxy and
directly against the fake (the baseline), alternating, `--reps` times. Reported per turn: bytes
the fake received, added TTFB (proxy - direct, to the first content event) and the proxy's
CPU (web worker; Celery separately).

`soak`: `--sockets` client WebSockets held for `--minutes`, each with a prewarm and `--turns`
turns spread over the time. Reported: the web worker's RSS over time (slope after warm-up),
upstream sockets open on the fake during and after (after must be 0), and usage records
(surface `responses.ws`) against the `response.create` messages sent (must be equal).
Exit status 1 when a check fails. Uses its own database (`proxy_ws_bench`), Redis db 12 and a
state-key prefix of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.run import (
    CLK,
    HOST,
    PY,
    RESULTS,
    ROOT,
    Server,
    _cpu_ticks,
    _start,
    loadavg,
    proxy_env,
    start_proxy,
    stop_all,
)
from bench.soak import RssSampler, _free_port, rss_summary

DB = "proxy_ws_bench"
REDIS = "redis://127.0.0.1:6379/12"
MODEL = "gpt-5.5"
CONTENT = ("response.created", "response.in_progress")


# --------------------------------------------------------------------------- the payloads


def _words(n: int, seed: str) -> str:
    base = f"{seed}: read the repository, plan the change, run the tests, explain the result. "
    return (base * (n // len(base) + 1))[:n]


def _tool(name: str, i: int) -> dict[str, Any]:
    props = {f"arg{j}": {"type": "string", "description": _words(60, f"{name} argument {j}")} for j in range(5)}
    return {
        "type": "function",
        "name": name,
        "description": _words(400, f"tool {name}"),
        "strict": False,
        "parameters": {"type": "object", "properties": props, "required": ["arg0"], "additionalProperties": False},
    }


TOOLS = [_tool(n, i) for i, n in enumerate(
    ("exec_command", "write_stdin", "apply_patch_json", "view_image", "request_user_input",
     "get_goal", "create_goal", "update_goal", "list_mcp_resources", "read_mcp_resource")
)]  # fmt: skip


def _message(role: str, text: str) -> dict[str, Any]:
    return {"type": "message", "id": f"msg_{uuid.uuid4().hex}", "role": role,
            "content": [{"type": "input_text", "text": text}]}  # fmt: skip


def opening() -> list[dict[str, Any]]:
    """What Codex CLI 0.169 sends first (docs/protocols/clients.md#codex-cli): base prompt, skills + permissions,
    environment context."""
    return [
        _message("developer", _words(20_000, "You are Codex, a coding agent")),
        _message("developer", _words(5_000, "skills and permissions")),
        _message("user", "<environment_context><cwd>/work/repo</cwd><shell>bash</shell></environment_context>"),
    ]


def request_body(session: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": MODEL,
        "input": items,
        "tools": TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": session,
        "text": {"verbosity": "low"},
        "client_metadata": {"session_id": session, "thread_id": session},
    }


def tool_output(call: dict[str, Any], i: int) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call["call_id"], "output": _words(2_000, f"output {i}")}


# ----------------------------------------------------------------------------- a session


@dataclass
class Target:
    http_url: str  # POST here
    ws_url: str  # upgrade here
    headers: dict[str, str]


@dataclass
class Turn:
    ttfb_ms: float
    upstream_bytes: int


@dataclass
class Session:
    turns: list[Turn] = field(default_factory=list)
    cpu_ticks: int = 0
    celery_ticks: int = 0


async def _first_content_http(client: httpx.AsyncClient, t: Target, body: dict[str, Any]) -> tuple[float, dict]:
    started = time.perf_counter()
    first: float | None = None
    final: dict[str, Any] = {}
    async with client.stream("POST", t.http_url, content=orjson.dumps(body), headers=t.headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = orjson.loads(line[6:])
            if first is None and event.get("type") not in CONTENT:
                first = time.perf_counter()
            if event.get("type") == "response.completed":
                final = event["response"]
    assert first is not None and final, "no content or no response.completed"
    return (first - started) * 1000, final


async def _first_content_ws(ws: ClientConnection, frame: dict[str, Any]) -> tuple[float, dict]:
    started = time.perf_counter()
    first: float | None = None
    await ws.send(orjson.dumps({"type": "response.create", **frame}).decode())
    while True:
        event = orjson.loads(await ws.recv())
        kind = event.get("type")
        if kind in ("error", "response.failed"):
            raise RuntimeError(f"turn failed: {event}")
        if first is None and kind not in CONTENT:
            first = time.perf_counter()
        if kind == "response.completed":
            return ((first or time.perf_counter()) - started) * 1000, event["response"]


def _prompt(i: int) -> dict[str, Any]:
    return _message("user", f"call tool: step {i} of the plan")


async def run_session(t: Target, *, ws: bool, requests: int, stats: Any) -> list[Turn]:
    """One Codex-CLI-like session: `requests` model requests (prompt → tool call → answer)."""
    session = str(uuid.uuid4())
    items = opening()
    turns: list[Turn] = []
    new_items: list[dict[str, Any]] = [_prompt(0)]
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
        sock = None
        last_id: str | None = None
        if ws:
            sock = await stack.enter_async_context(connect(t.ws_url, additional_headers=t.headers, max_size=2**25))
            _, warm = await _first_content_ws(sock, {**request_body(session, items), "generate": False})
            last_id = warm["id"]
        for i in range(requests):
            before = stats()
            if sock is not None:
                frame = {**request_body(session, new_items), "previous_response_id": last_id}
                ttfb, final = await _first_content_ws(sock, frame)
            else:
                ttfb, final = await _first_content_http(client, t, request_body(session, [*items, *new_items]))
            turns.append(Turn(ttfb, stats() - before))
            items = [*items, *new_items, *final["output"]]
            last_id = final["id"]
            calls = [o for o in final["output"] if o.get("type") == "function_call"]
            new_items = [tool_output(calls[0], i)] if calls else [_prompt(i + 1)]
    return turns


# ------------------------------------------------------------------------------- set-up


def _env(var_dir: Path) -> dict[str, str]:
    """bin/run's production environment (bench.run), on this benchmark's own database and Redis db."""
    env = proxy_env(var_dir, 1)
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
        REDIS_URL=REDIS,
        # Own keys: on a shared Redis another run's usage buffer must never mix with this one's.
        STATE_KEY_PREFIX=f"llmproxy-wsbench-{os.getpid()}:",
        LOG_LEVEL="WARNING",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    import subprocess

    out = subprocess.run([PY, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, timeout=300)
    if out.returncode:
        raise RuntimeError(f"manage.py {args[0]}: {out.stderr.decode()[-2000:]}")
    return out.stdout.decode().strip()


def _reset_services() -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')


def _records() -> int:
    import psycopg

    with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{DB}") as conn:
        row = conn.execute("SELECT count(*) FROM audit_usagerecord WHERE surface = 'responses.ws'").fetchone()
    return int(row[0]) if row else 0


@dataclass
class World:
    proxy: Server
    fake_url: str
    key: str
    auth: dict[str, Any]

    def fake_stats(self) -> dict[str, int]:
        return dict(httpx.get(self.fake_url + "/_fake/transport", timeout=10).json())

    def via_proxy(self) -> Target:
        base = f"http://{HOST}:{self.proxy.port}/v1/responses"
        return Target(base, base.replace("http://", "ws://"), {"authorization": f"Bearer {self.key}"})

    def direct(self) -> Target:
        tokens = self.auth["tokens"]
        base = self.fake_url + "/backend-api/codex/responses"
        headers = {
            "authorization": f"Bearer {tokens['access_token']}",
            "chatgpt-account-id": tokens["account_id"],
            "originator": "codex_exec",
            "user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)",
            "session-id": str(uuid.uuid4()),
        }
        return Target(base, base.replace("http://", "ws://"), headers)


def start_world(tmp: Path, *, fake_args: list[str]) -> World:
    RESULTS.mkdir(exist_ok=True)
    fake_port, proxy_port = _free_port(), _free_port()
    auth_file = tmp / "auth.json"
    fake_cmd = [PY, "-m", "tests.fakes.codex", "--port", str(fake_port), "--write-auth-json", str(auth_file)]
    _start([*fake_cmd, "--no-ws-frames", *fake_args], dict(os.environ), RESULTS / "ws-fake.log")
    fake_url = f"http://{HOST}:{fake_port}"
    for _ in range(100):
        if auth_file.exists() and auth_file.stat().st_size:
            break
        time.sleep(0.1)
    env = _env(tmp)
    _reset_services()
    _manage(env, "migrate", "--noinput")
    _manage(
        env, "codex_import", "--file", str(auth_file), "--label", "codex-bench",
        "--base-url", fake_url + "/backend-api/codex", "--auth-url", fake_url, "--models", MODEL,
    )  # fmt: skip
    key = _manage(env, "key_create", "--name", "ws-bench", "--quiet").splitlines()[-1]
    proxy = start_proxy("ws-proxy", proxy_port, ROOT, env, key, workers=1, celery=True)
    return World(proxy, fake_url, key, json.loads(auth_file.read_text()))


def _ticks(pids: list[int]) -> int:
    return sum(_cpu_ticks(p, reaped=True) for p in pids)


# ------------------------------------------------------------------------------ session


async def _session_bench(world: World, requests: int, reps: int) -> dict[str, Any]:
    results: dict[str, list[Session]] = {k: [] for k in ("http", "ws", "http-direct", "ws-direct")}
    web, celery = world.proxy.tree(), world.proxy.helper_tree()

    def stats_for(ws: bool) -> Any:
        key = "ws_bytes_in" if ws else "http_bytes_in"
        return lambda: world.fake_stats()[key]

    # the proxy sends even HTTP clients' turns over an upstream socket for gpt-5.5
    # (docs/protocols/codex.md#transport-http-and-websocket)
    def upstream_bytes() -> int:
        s = world.fake_stats()
        return s["ws_bytes_in"] + s["http_bytes_in"]

    for rep in range(reps):
        for name in (
            ("http", "ws", "http-direct", "ws-direct") if rep % 2 == 0 else ("ws", "http", "ws-direct", "http-direct")
        ):
            ws = name.startswith("ws")
            target = world.direct() if name.endswith("direct") else world.via_proxy()
            t0, c0 = _ticks(web), _ticks(celery)
            turns = await run_session(
                target, ws=ws, requests=requests, stats=upstream_bytes if not name.endswith("direct") else stats_for(ws)
            )
            results[name].append(Session(turns, _ticks(web) - t0, _ticks(celery) - c0))
    return _session_report(results, requests)


def _session_report(results: dict[str, list[Session]], requests: int) -> dict[str, Any]:
    def per_turn(name: str, attr: str) -> list[float]:
        return [statistics.median(getattr(s.turns[i], attr) for s in results[name]) for i in range(requests)]

    out: dict[str, Any] = {"requests": requests, "reps": len(results["ws"]), "loadavg": loadavg()}
    for mode in ("http", "ws"):
        proxy_ttfb, direct_ttfb = per_turn(mode, "ttfb_ms"), per_turn(f"{mode}-direct", "ttfb_ms")
        added = [p - d for p, d in zip(proxy_ttfb, direct_ttfb, strict=True)]
        out[mode] = {
            "upstream_bytes_per_turn": per_turn(mode, "upstream_bytes"),
            "client_bytes_direct_per_turn": per_turn(f"{mode}-direct", "upstream_bytes"),
            "added_ttfb_ms_per_turn": [round(a, 2) for a in added],
            "added_ttfb_ms_median": round(statistics.median(added), 2),
            "proxy_cpu_ms_per_turn": round(
                statistics.median(s.cpu_ticks for s in results[mode]) * 1000 / CLK / requests, 2
            ),
            "celery_cpu_ms_per_turn": round(
                statistics.median(s.celery_ticks for s in results[mode]) * 1000 / CLK / requests, 2
            ),
        }
        total = out[mode]["upstream_bytes_per_turn"]
        out[mode]["upstream_bytes_total"] = sum(total)
    return out


# --------------------------------------------------------------------------------- soak


async def _soak_socket(t: Target, turns: int, seconds: float, counts: dict[str, Any], i: int) -> None:
    session = str(uuid.uuid4())
    items = opening()
    gap = seconds / turns
    await asyncio.sleep((i % 50) * gap / 50)  # spread the turns over the gap
    async with connect(t.ws_url, additional_headers=t.headers, max_size=2**25) as sock:
        counts["open"] += 1
        counts["sent"] += 1
        _, final = await _first_content_ws(sock, {**request_body(session, items), "generate": False})
        last_id, new_items = final["id"], [_prompt(0)]
        started = time.monotonic()
        for n in range(turns):
            counts["sent"] += 1
            try:
                _, final = await _first_content_ws(
                    sock, {**request_body(session, new_items), "previous_response_id": last_id}
                )
            except Exception as exc:
                counts["errors"] += 1
                counts.setdefault("samples", []).append(repr(exc)[:200])
                return
            counts["turns"] += 1
            calls = [o for o in final["output"] if o.get("type") == "function_call"]
            last_id = final["id"]
            new_items = [tool_output(calls[0], n)] if calls else [_prompt(n + 1)]
            await asyncio.sleep(max(0.0, started + (n + 1) * gap - time.monotonic()))
        counts["open"] -= 1


async def _soak(world: World, sockets: int, turns: int, seconds: float, sampler: RssSampler) -> dict[str, Any]:
    counts: dict[str, Any] = {"open": 0, "sent": 0, "turns": 0, "errors": 0}
    upstream_peak = 0

    async def watch() -> None:
        nonlocal upstream_peak
        while True:
            await asyncio.sleep(5)
            upstream_peak = max(upstream_peak, (await asyncio.to_thread(world.fake_stats))["ws_open"])

    watcher = asyncio.create_task(watch())
    target = world.via_proxy()
    await asyncio.gather(*(_soak_socket(target, turns, seconds, counts, i) for i in range(sockets)))
    watcher.cancel()
    return {**counts, "upstream_open_peak": upstream_peak}


def soak(args: argparse.Namespace, world: World) -> dict[str, Any]:
    seconds = args.seconds or args.minutes * 60
    workers = world.proxy.workers()
    with RssSampler(workers, 5.0) as sampler:
        counts = asyncio.run(_soak(world, args.sockets, args.turns, seconds, sampler))
    time.sleep(3)  # the proxy closes each upstream socket with its client socket
    after = world.fake_stats()
    for _ in range(30):  # Celery flushes every 2 s
        if _records() >= counts["sent"]:
            break
        time.sleep(1)
    records = _records()
    rss = rss_summary(sampler, min(120.0, seconds * 0.2))
    result = {
        "sockets": args.sockets, "turns_per_socket": args.turns, "seconds": seconds, "loadavg_end": loadavg(),
        **counts, "upstream_open_after": after["ws_open"], "upstream_opened_total": after["ws_opened_total"],
        "records": records, "records_match": records == counts["sent"], "rss": rss,
    }  # fmt: skip
    result["passed"] = (
        counts["errors"] == 0
        and counts["turns"] == args.sockets * args.turns
        and result["records_match"]
        and after["ws_open"] == 0
        and all(w["slope_mib_per_min"] <= args.max_slope for w in rss.values())
    )
    return result


# --------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("session", help="30-turn session: HTTP vs WebSocket")
    s.add_argument("--requests", type=int, default=30)
    s.add_argument("--reps", type=int, default=5)
    k = sub.add_parser("soak", help="many sockets held with several turns each")
    k.add_argument("--sockets", type=int, default=200)
    k.add_argument("--turns", type=int, default=5)
    k.add_argument("--minutes", type=float, default=10.0)
    k.add_argument("--seconds", type=float, default=0.0, help="overrides --minutes (short runs)")
    k.add_argument("--max-slope", type=float, default=1.0, help="MiB per minute allowed after warm-up")
    for p in (s, k):
        p.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    fake_args = ["--chunks", "20", "--interval", "0.005" if args.cmd == "session" else "0.02"]
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        try:
            world = start_world(Path(tmp), fake_args=fake_args)
            if args.cmd == "session":
                result = asyncio.run(_session_bench(world, args.requests, args.reps))
                result["passed"] = True
            else:
                result = soak(args, world)
        finally:
            stop_all()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
