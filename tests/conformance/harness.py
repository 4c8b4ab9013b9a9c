"""Plumbing of the conformance suite: where the pinned clients live, a recorder around the
proxy's ASGI app, a listener that refuses every outside connection, and the result matrix."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_DIR = Path(os.environ.get("CLIENTS_DIR", ROOT / ".clients"))
BIN = CLIENTS_DIR / "node_modules" / ".bin"
# The pins live in bin/install-clients, which writes them into .clients/package.json.
PACKAGES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex"}


def pinned_versions() -> dict[str, str]:
    script = (ROOT / "bin" / "install-clients").read_text()
    out: dict[str, str] = {}
    for line in script.splitlines():
        for var, name in (("CLAUDE_CODE_VERSION=", "claude"), ("CODEX_VERSION=", "codex")):
            if line.startswith(var):
                out[name] = line.split("=", 1)[1].strip().strip('"')
    return out


def installed_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, package in PACKAGES.items():
        manifest = CLIENTS_DIR / "node_modules" / package / "package.json"
        try:
            out[name] = str(json.loads(manifest.read_text())["version"])
        except (OSError, ValueError, KeyError):
            out[name] = None
    return out


def clients_problem() -> str | None:
    """Why the CLI cells cannot run, or None when both pinned clients are installed."""
    pins, found = pinned_versions(), installed_versions()
    for name in PACKAGES:
        if found[name] is None or not (BIN / name).exists():
            return f"{PACKAGES[name]} is not installed in {CLIENTS_DIR} (run bin/install-clients)"
        if found[name] != pins.get(name):
            return f"{PACKAGES[name]} {found[name]} installed, {pins.get(name)} pinned (run bin/install-clients)"
    return None


# --------------------------------------------------------------------------- the proxy


@dataclass
class ProxyHit:
    kind: str  # "http" | "websocket"
    method: str
    path: str
    status: int | None = None
    stream: bool | None = None  # the JSON body's `stream`, when there is one
    frames: int = 0  # WebSocket: response.create messages the client sent
    compaction: bool = False  # a request or frame whose input carried a compaction_trigger item


class RecordingApp:
    """Wraps the proxy's ASGI app and records every request's method, path, status and
    `stream` flag, so cells can assert what the client really sent (one streamed POST, one
    WebSocket with its response.create messages...) without trusting the client's own report."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._hits: list[ProxyHit] = []

    @property
    def hits(self) -> list[ProxyHit]:
        with self._lock:
            return list(self._hits)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hit = ProxyHit(scope["type"], scope.get("method", "GET"), scope["path"])
        with self._lock:
            self._hits.append(hit)
        body = bytearray()

        async def receive_recorded() -> dict[str, Any]:
            msg: dict[str, Any] = await receive()
            if msg["type"] == "websocket.receive" and '"response.create"' in (msg.get("text") or ""):
                hit.frames += 1
                hit.compaction = hit.compaction or '"compaction_trigger"' in (msg.get("text") or "")
            if msg["type"] == "http.request":
                body.extend(msg.get("body", b""))
                if not msg.get("more_body") and body:
                    try:
                        parsed = json.loads(bytes(body))
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict):
                        hit.stream = bool(parsed.get("stream"))
                        hit.compaction = b'"compaction_trigger"' in body
            return msg

        async def send_recorded(msg: dict[str, Any]) -> None:
            if msg["type"] in ("http.response.start", "websocket.http.response.start"):
                hit.status = int(msg["status"])
            elif msg["type"] == "websocket.accept":
                hit.status = 101
            elif msg["type"] == "websocket.close" and hit.status is None:
                hit.status = 403  # what uvicorn answers for a close before accept
            await send(msg)

        await self.app(scope, receive_recorded, send_recorded)


# ------------------------------------------------------------ outside traffic refused


class RefusingProxy:
    """An HTTPS_PROXY for the CLIs that logs each CONNECT target and answers 403.

    The clients are configured never to call their vendors; if one still tries, it fails
    fast here (no DNS, no network) and the attempt is listed in the report instead of
    failing the cell.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.targets: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="refusing-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(4096).decode("latin-1")
                    self.targets.append(" ".join(head.split("\r\n", 1)[0].split(" ")[:2]))
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self._sock.close()


# ---------------------------------------------------------------------------- results

SCENARIOS = ("plain", "tool", "multi-turn", "429-failover", "mid-stream-cut", "compaction")
SCENARIO_TITLES = {
    "plain": "plain prompt (SDKs: no system prompt)",
    "tool": "tool round trip",
    "multi-turn": "multi-turn",
    "429-failover": "429 on 1st account",
    "mid-stream-cut": "cut mid-stream",
    "compaction": "compaction",
}
# (client, scenario) cells that do not exist, with why; shown as "n/a" and not run.
NOT_APPLICABLE = {
    ("claude-code", "compaction"): "Claude Code compacts on its own: an ordinary /v1/messages turn",
    ("openai-sdk chat", "compaction"): "Chat Completions has no compaction",
    ("anthropic-sdk", "compaction"): "the Messages API has no compaction endpoint the proxy serves",
}


@dataclass
class CellResult:
    client: str
    path: str
    scenario: str
    status: str  # "pass" | "fail" | "known" | "n/a"
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Matrix:
    cells: dict[tuple[str, str, str], CellResult] = field(default_factory=dict)
    expected: int = 0  # cells collected this session
    started: float = field(default_factory=time.monotonic)
    outside: list[str] = field(default_factory=list)

    def add(self, result: CellResult) -> None:
        self.cells[(result.client, result.path, result.scenario)] = result


MATRIX = Matrix()


def _cell_text(r: CellResult | None, na: bool = False) -> str:
    if r is None:
        return "n/a" if na else "not run"
    if r.status == "pass":
        return "pass"
    if r.status == "n/a":
        return "n/a"
    return "known bug" if r.status == "known" else "**FAIL**"


def render(matrix: Matrix, *, clients: list[str], paths: list[str], titles: dict[str, str], header: str) -> str:
    lines = [header, ""]
    lines.append("| client | upstream path | " + " | ".join(SCENARIO_TITLES[s] for s in SCENARIOS) + " |")
    lines.append("|---|---|" + "---|" * len(SCENARIOS))
    for client in clients:
        for path in paths:
            if not any((client, path, s) in matrix.cells for s in SCENARIOS):
                continue
            row = [_cell_text(matrix.cells.get((client, path, s)), (client, s) in NOT_APPLICABLE) for s in SCENARIOS]
            lines.append(f"| {client} | {path} | " + " | ".join(row) + " |")
    notes = [r for r in matrix.cells.values() if r.status in ("fail", "known") and r.reason]
    if notes:
        # One entry per distinct reason: a single proxy bug usually fails a whole row.
        by_reason: dict[tuple[str, str], list[CellResult]] = {}
        for r in sorted(notes, key=lambda r: (clients.index(r.client), paths.index(r.path), r.scenario)):
            by_reason.setdefault((r.status, r.reason), []).append(r)
        lines += ["", "Reasons:", ""]
        for (status, reason), cells in by_reason.items():
            label = "FAIL" if status == "fail" else "known bug"
            rows: dict[tuple[str, str], list[str]] = {}
            for r in cells:
                rows.setdefault((r.client, r.path), []).append(r.scenario)
            where = "; ".join(
                f"{c} x {p} ({'all scenarios' if len(sc) == len(SCENARIOS) else ', '.join(sc)})"
                for (c, p), sc in rows.items()
            )
            lines.append(f"- **{label}**, {len(cells)} cells: {where}. {reason}")
    cuts = [r for r in matrix.cells.values() if r.status == "pass" and r.scenario == "mid-stream-cut" and r.reason]
    if cuts:
        lines += ["", "How each client reported the mid-stream cut (all correctly failed):", ""]
        for r in sorted(cuts, key=lambda r: (clients.index(r.client), paths.index(r.path))):
            lines.append(f"- {r.client} x {r.path}: {r.reason}")
    lines += ["", "Not applicable (n/a):", ""]
    lines += [f"- {c} x {s}: {why}" for (c, s), why in NOT_APPLICABLE.items() if c in clients]
    lines += ["", "Upstream paths:", ""]
    lines += [f"- `{p}`: {titles[p]}" for p in paths]
    return "\n".join(lines) + "\n"
