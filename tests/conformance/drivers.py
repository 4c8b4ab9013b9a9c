"""One driver per client: runs a scenario against the proxy and raises `CellError` with an
exact reason when the client (or what the proxy/upstream saw) is not what a real user needs.

CLIs run non-interactively and offline: HOME/CODEX_HOME in the cell's temp dir, base URLs to
the proxy, every vendor side channel switched off (docs/protocols/clients.md#claude-code,
docs/protocols/clients.md#codex-cli), the strict flags
that stop silent retries and non-streaming fallbacks, and HTTPS_PROXY pointing at a listener
that refuses outside connections. SDKs are the pinned `openai` / `anthropic` packages with
`max_retries=0`; the test code plays the tool.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai

from formats.compaction import SUMMARY_HEADER, SUMMARY_PROMPT
from tests.conformance.harness import BIN, RecordingApp
from tests.conformance.paths import Upstream
from tests.conformance.scripted import MARKER_FILE, TOOL_TRIGGER
from tests.fakes.base import Fault

CLI_TIMEOUT = 50.0  # two runs per multi-turn cell must fit the 120 s pytest timeout
# Events the fakes send before this index include the first content deltas, so the proxy has
# already committed bytes to the client: failover is no longer allowed, an error event is due.
CUT_AFTER = 7


class CellError(AssertionError):
    """A cell failed; the message is the reason printed in the matrix."""


def expect(condition: object, reason: str) -> None:
    if not condition:
        raise CellError(reason)


@dataclass
class Cell:
    client: str
    path: str
    scenario: str
    proxy_url: str
    key: str
    up: Upstream
    recorder: RecordingApp
    workdir: Path
    home: Path
    refusing_proxy: str
    nonce: str
    note: str = ""  # how a passing failure cell was reported by the client (for the doc)

    @property
    def marker(self) -> str:
        return f"MARKER-{self.nonce}"

    def write_marker(self) -> None:
        (self.workdir / MARKER_FILE).write_text(self.marker + "\n")

    def cli_env(self, **extra: str) -> dict[str, str]:
        # A clean environment: nothing from the developer's shell (API keys, proxies, configs)
        # may leak into the run.
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "TMPDIR": str(self.home),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "HTTPS_PROXY": self.refusing_proxy,
            "https_proxy": self.refusing_proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        env.update(extra)
        return env

    def expect_fault_hit(self, surface: str) -> None:
        """The injected fault really fired on a model call, and (for a cut) the proxy had
        already answered 200: the error reached the client inside the stream. Without this a
        request refused before the upstream would pass a "cut" cell."""
        expect(not self.up.server.faults.pending(), "the injected fault was never consumed by a model call")
        if self.scenario == "mid-stream-cut":
            calls = len(self.up.calls())
            expect(calls == 1, f"upstream got {calls} model calls; the cut must not be retried elsewhere")
            hits = [h for h in self.recorder.hits if h.method == "POST" and h.path == surface]
            expect(hits and hits[-1].status == 200, f"proxy answered {[h.status for h in hits]} on {surface}")

    def expect_system_text(self, *, caller_has_system: bool) -> None:
        """What the upstream got as system text. Without a system prompt (the SDK cells): no
        system text at all, except on the Codex backend, which requires instructions and gets
        the neutral default. With one (the CLIs' own prompts): it went out as the caller sent it;
        Codex CLI's developer items reach the Codex backend unchanged, without instructions."""
        calls = self.up.calls()
        expect(calls, "the upstream got no model call")
        body = calls[-1]["json"] or {}
        items = body.get("input") if isinstance(body.get("input"), list) else []
        developer = [i for i in items if isinstance(i, dict) and i.get("role") in ("developer", "system")]
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        chat_system = [m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")]
        system = body.get("system") or body.get("instructions") or developer or chat_system
        if self.up.name == "codex":
            if caller_has_system:
                expect(system, "the caller's system text did not reach the Codex backend")
                if self.client.startswith("codex-cli"):
                    expect("instructions" not in body and developer, "Codex CLI's developer items were rewritten")
            else:
                expect(
                    body.get("instructions") == "You are a helpful assistant." and not developer,
                    f"no caller system text, yet instructions={body.get('instructions')!r} developer={developer!r}",
                )
        elif not caller_has_system:
            expect(not system, f"a system prompt appeared from nowhere: {str(system)[:200]}")
        else:
            expect(system, "the caller's system text did not reach the upstream")

    def upstream_saw(self, *needles: str) -> bool:
        calls = self.up.calls()
        if not calls:
            return False
        body = json.dumps(calls[-1]["json"])
        return all(n in body for n in needles)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# ============================================================================ Claude Code


@dataclass
class ClaudeRun:
    rc: int
    data: dict[str, Any] | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.data is not None and self.data.get("is_error") is False

    @property
    def result(self) -> str:
        return str((self.data or {}).get("result") or "")

    def why(self) -> str:
        if self.data is not None:
            return f"exit {self.rc}, is_error={self.data.get('is_error')}, result: {_short(self.result)}"
        return f"exit {self.rc}, stdout: {_short(self.stdout)} stderr: {_short(self.stderr)}"


def claude(cell: Cell, prompt: str, *extra: str) -> ClaudeRun:
    env = cell.cli_env(
        ANTHROPIC_BASE_URL=cell.proxy_url,
        ANTHROPIC_API_KEY=cell.key,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        # Strict: a broken stream must fail, not be retried or re-requested without `stream`.
        CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK="1",
        CLAUDE_CODE_MAX_RETRIES="0",
    )
    cmd = [str(BIN / "claude"), "-p", prompt, "--model", cell.up.model, "--output-format", "json", *extra]
    proc = subprocess.run(
        cmd, cwd=cell.workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    data: dict[str, Any] | None = None
    try:
        parsed = json.loads(proc.stdout)
        data = parsed if isinstance(parsed, dict) else None
    except ValueError:
        pass
    return ClaudeRun(proc.returncode, data, proc.stdout, proc.stderr)


def _messages_posts(cell: Cell) -> list[Any]:
    return [h for h in cell.recorder.hits if h.method == "POST" and h.path == "/v1/messages"]


def claude_code(cell: Cell) -> None:
    s = cell.scenario
    if s in ("plain", "429-failover"):
        if s == "429-failover":
            cell.up.push(Fault.http(429))
        run = claude(cell, f"Say hello to conformance run {cell.nonce}")
        expect(run.ok, f"claude -p failed: {run.why()}")
        expect(cell.nonce in run.result, f"answer does not echo the prompt: {_short(run.result)}")
        posts = _messages_posts(cell)
        expect(len(posts) == 1 and posts[0].stream, f"expected one streamed POST /v1/messages, saw {posts}")
        want = 2 if s == "429-failover" else 1
        if s == "429-failover":
            cell.expect_fault_hit("")
        expect(len(cell.up.calls()) == want, f"upstream got {len(cell.up.calls())} model calls, expected {want}")
        cell.expect_system_text(caller_has_system=True)
    elif s == "tool":
        cell.write_marker()
        run = claude(cell, f"{TOOL_TRIGGER}: show me what {MARKER_FILE} contains", "--allowedTools", "Bash")
        expect(run.ok, f"claude -p failed: {run.why()}")
        expect(cell.marker in run.result, f"tool output did not come back: {_short(run.result)}")
        expect(len(_messages_posts(cell)) == 2, f"expected 2 POST /v1/messages, saw {len(_messages_posts(cell))}")
        expect(cell.upstream_saw(cell.marker), "the upstream never received the tool result")
    elif s == "multi-turn":
        first = claude(cell, f"Remember the code word {cell.nonce}")
        expect(first.ok, f"turn 1 failed: {first.why()}")
        session = str((first.data or {}).get("session_id") or "")
        expect(session, "turn 1 reported no session_id")
        second = claude(cell, "Which code word did I ask you to remember?", "--resume", session)
        expect(second.ok, f"turn 2 (--resume) failed: {second.why()}")
        expect("Which code word" in second.result, f"turn 2 answer: {_short(second.result)}")
        expect(cell.upstream_saw(cell.nonce, "echo:"), "turn 2 reached the upstream without turn 1's history")
    elif s == "mid-stream-cut":
        cell.up.push(Fault.cut(CUT_AFTER))
        run = claude(cell, f"Say hello to conformance run {cell.nonce}")
        expect(not run.ok, f"a cut stream was reported as success: {_short(run.result)}")
        cell.expect_fault_hit("/v1/messages")
        cell.note = run.why()
    else:
        raise ValueError(s)


# ============================================================================= Codex CLI


@dataclass
class CodexRun:
    rc: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0 and any(e.get("type") == "turn.completed" for e in self.events)

    @property
    def text(self) -> str:
        items = [e.get("item") or {} for e in self.events if e.get("type") == "item.completed"]
        return "\n".join(str(i.get("text") or "") for i in items if i.get("type") == "agent_message")

    @property
    def thread_id(self) -> str:
        return next((str(e.get("thread_id")) for e in self.events if e.get("type") == "thread.started"), "")

    def why(self) -> str:
        errors = [e for e in self.events if e.get("type") in ("error", "turn.failed")]
        detail = json.dumps(errors[-1]) if errors else self.stderr
        return f"exit {self.rc}: {_short(detail)}"


CODEX_CONFIG = """\
model = "{model}"
model_provider = "proxy"
check_for_update_on_startup = false

[model_providers.proxy]
name = "{name}"
base_url = "{base_url}"
wire_api = "responses"
env_key = "PROXY_API_KEY"
request_max_retries = 0
stream_max_retries = 0
supports_websockets = {ws}

[analytics]
enabled = false

[features]
plugins = false

[otel]
exporter = "none"
metrics_exporter = "none"
trace_exporter = "none"
"""


def codex(cell: Cell, *args: str, ws: bool, config: tuple[str, ...] = (), provider: str = "Team proxy") -> CodexRun:
    """One `codex exec` run. `config`: `-c key=value` overrides on the client side; `provider`:
    the provider's display name (Codex CLI 0.169 uses remote compaction only for "OpenAI")."""
    codex_home = cell.home / "codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        CODEX_CONFIG.format(
            model=cell.up.model, base_url=cell.proxy_url + "/v1", ws="true" if ws else "false", name=provider
        )
    )
    env = cell.cli_env(CODEX_HOME=str(codex_home), PROXY_API_KEY=cell.key)
    overrides = [arg for c in config for arg in ("-c", c)]
    cmd = [str(BIN / "codex"), "exec", "--json", "--skip-git-repo-check", "--strict-config", *overrides, *args]
    proc = subprocess.run(
        cmd, cwd=cell.workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    events: list[dict[str, Any]] = []
    for line in proc.stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            events.append(ev)
    return CodexRun(proc.returncode, events, proc.stdout, proc.stderr)


def codex_cli(cell: Cell) -> None:
    s = cell.scenario
    posts = lambda: [h for h in cell.recorder.hits if h.method == "POST" and h.path == "/v1/responses"]  # noqa: E731
    if s in ("plain", "429-failover"):
        if s == "429-failover":
            cell.up.push(Fault.http(429))
        run = codex(cell, f"Say hello to conformance run {cell.nonce}", ws=False)
        expect(run.ok, f"codex exec failed: {run.why()}")
        expect(cell.nonce in run.text, f"answer does not echo the prompt: {_short(run.text)}")
        expect(len(posts()) == 1 and posts()[0].stream, f"expected one streamed POST /v1/responses, saw {posts()}")
        usage = next((e.get("usage") for e in run.events if e.get("type") == "turn.completed"), None)
        expect(isinstance(usage, dict) and usage.get("output_tokens"), f"turn.completed usage: {usage}")
        want = 2 if s == "429-failover" else 1
        if s == "429-failover":
            cell.expect_fault_hit("")
        expect(len(cell.up.calls()) == want, f"upstream got {len(cell.up.calls())} model calls, expected {want}")
        cell.expect_system_text(caller_has_system=True)
    elif s == "tool":
        cell.write_marker()
        run = codex(cell, f"{TOOL_TRIGGER}: show me what {MARKER_FILE} contains", ws=False)
        expect(run.ok, f"codex exec failed: {run.why()}")
        ran = [
            e["item"]
            for e in run.events
            if e.get("type") == "item.completed" and (e.get("item") or {}).get("type") == "command_execution"
        ]
        expect(ran, f"the CLI ran no command; events: {_short(json.dumps(run.events))}")
        expect(cell.marker in run.text, f"tool output did not come back: {_short(run.text)}")
        expect(len(posts()) == 2, f"expected 2 POST /v1/responses, saw {len(posts())}")
        expect(cell.upstream_saw(cell.marker), "the upstream never received the tool output")
    elif s == "multi-turn":
        first = codex(cell, f"Remember the code word {cell.nonce}", ws=False)
        expect(first.ok, f"turn 1 failed: {first.why()}")
        expect(first.thread_id, "turn 1 reported no thread id")
        second = codex(cell, "resume", first.thread_id, "Which code word did I ask you to remember?", ws=False)
        expect(second.ok, f"turn 2 (exec resume) failed: {second.why()}")
        expect("Which code word" in second.text, f"turn 2 answer: {_short(second.text)}")
        expect(cell.upstream_saw(cell.nonce, "echo:"), "turn 2 reached the upstream without turn 1's history")
    elif s == "mid-stream-cut":
        cell.up.push(Fault.cut(CUT_AFTER))
        run = codex(cell, f"Say hello to conformance run {cell.nonce}", ws=False)
        expect(not run.ok, f"a cut stream was reported as success: {_short(run.text)}")
        cell.expect_fault_hit("/v1/responses")
        cell.note = run.why()
    elif s == "compaction":
        _codex_compaction(cell, ws=False)
        expect(not posts() or all(h.status == 200 for h in posts()), f"answers: {[h.status for h in posts()]}")
    else:
        raise ValueError(s)


# Client-side only: compact as soon as the context passes 200 tokens (the CLI's own prompt is
# thousands), so the second run compacts before its turn. Account settings stay default.
COMPACT_LIMIT = "model_auto_compact_token_limit=200"


def _codex_compaction(cell: Cell, *, ws: bool) -> None:
    """Two runs of one session; the second compacts first (remote compaction: a `/v1/responses`
    turn whose input ends with `compaction_trigger`), then asks its question with the compacted
    history. Checked through the proxy: it got the trigger turn, answered it with a compaction
    item, and the next turn's upstream request carried that item's content."""
    first = codex(cell, f"Remember the code word {cell.nonce}", ws=ws, config=(COMPACT_LIMIT,), provider="OpenAI")
    expect(first.ok, f"turn 1 failed: {first.why()}")
    calls_before = len(cell.up.calls())
    second = codex(
        cell, "resume", first.thread_id, "Which code word?", ws=ws, config=(COMPACT_LIMIT,), provider="OpenAI"
    )
    expect(second.ok, f"turn 2 (after compaction) failed: {second.why()}")
    expect("Which code word" in second.text, f"turn 2 answer: {_short(second.text)}")
    triggers = [h for h in cell.recorder.hits if h.compaction]
    expect(triggers, "the proxy got no compaction turn (no compaction_trigger in any request)")
    calls = [json.dumps(c["json"]) for c in cell.up.calls()[calls_before:]]
    expect(len(calls) >= 2, f"upstream got {len(calls)} model calls in the compacting run, expected 2")
    if cell.up.name == "codex":
        # The backend compacts itself; the next turn replays the backend's own blob.
        expect('"compaction_trigger"' in calls[0], "the trigger did not reach the Codex backend")
        expect("fake-cmp-" in calls[-1], "the next turn did not carry the backend's compaction item")
    else:
        expect(SUMMARY_PROMPT in calls[0], "the proxy did not run its summarising turn")
        expect(SUMMARY_HEADER in calls[-1], "the next turn did not carry the proxy's summary")
    expect(cell.nonce in calls[-1], "the code word (a retained user message) did not survive compaction")
    cell.note = f"{len(triggers)} compaction turn(s) through the proxy"


def _codex_checks_ws(cell: Cell, runs: int, turns: int) -> None:
    """With WebSockets enabled: one accepted socket per CLI run, every turn went over it (no
    HTTP POST), and the proxy saw each run's socket close."""
    sockets = [h for h in cell.recorder.hits if h.kind == "websocket"]
    expect(len(sockets) == runs, f"{len(sockets)} WebSocket upgrades for {runs} CLI run(s)")
    expect(all(h.status == 101 for h in sockets), f"upgrade answers: {[h.status for h in sockets]}")
    posts = [h for h in cell.recorder.hits if h.method == "POST" and h.path == "/v1/responses"]
    expect(not posts, f"{len(posts)} turns fell back to HTTP POST")
    sent = sum(h.frames for h in sockets)
    expect(sent >= turns, f"{sent} response.create frames for {turns} turn(s)")


def codex_cli_ws(cell: Cell) -> None:
    """Codex CLI with `supports_websockets = true`: the whole conversation on one client
    WebSocket per run, continuations sent as `previous_response_id` + new items."""
    s = cell.scenario
    runs, turns = 1, 1
    if s == "plain":
        run = codex(cell, f"Say hello to conformance run {cell.nonce}", ws=True)
        expect(run.ok, f"codex exec failed: {run.why()}")
        expect(cell.nonce in run.text, f"answer does not echo the prompt: {_short(run.text)}")
        usage = next((e.get("usage") for e in run.events if e.get("type") == "turn.completed"), None)
        expect(isinstance(usage, dict) and usage.get("output_tokens"), f"turn.completed usage: {usage}")
        expect(len(cell.up.calls()) == 1, f"upstream got {len(cell.up.calls())} model calls, expected 1")
        cell.expect_system_text(caller_has_system=True)
    elif s in ("tool", "429-failover"):
        # 429-failover: the first account refuses the *second* turn on the socket (the tool
        # result, sent incrementally); the proxy moves it, with the whole history, to the other.
        if s == "429-failover":
            cell.up.push(Fault(kind="ok"))
            cell.up.push(Fault.http(429))
        cell.write_marker()
        run = codex(cell, f"{TOOL_TRIGGER}: show me what {MARKER_FILE} contains", ws=True)
        expect(run.ok, f"codex exec failed: {run.why()}")
        expect(cell.marker in run.text, f"tool output did not come back: {_short(run.text)}")
        expect(cell.upstream_saw(cell.marker), "the upstream never received the tool output")
        turns = 2
        want = 3 if s == "429-failover" else 2
        expect(len(cell.up.calls()) == want, f"upstream got {len(cell.up.calls())} model calls, expected {want}")
        if s == "429-failover":
            cell.expect_fault_hit("")
            expect(cell.upstream_saw(TOOL_TRIGGER), "the turn moved without the conversation's history")
    elif s == "multi-turn":
        first = codex(cell, f"Remember the code word {cell.nonce}", ws=True)
        expect(first.ok, f"turn 1 failed: {first.why()}")
        second = codex(cell, "resume", first.thread_id, "Which code word did I ask you to remember?", ws=True)
        runs, turns = 2, 2
        expect(second.ok, f"turn 2 (exec resume) failed: {second.why()}")
        expect("Which code word" in second.text, f"turn 2 answer: {_short(second.text)}")
        expect(cell.upstream_saw(cell.nonce, "echo:"), "turn 2 reached the upstream without turn 1's history")
    elif s == "mid-stream-cut":
        # Codex CLI 0.169 answers a failed WebSocket turn by switching the session to HTTP and
        # sending the turn again there (even with stream_max_retries = 0), so the cut hits both:
        # the socket's turn must end in `response.failed`, and the HTTP retry in a stream error.
        cell.up.push(Fault.cut(CUT_AFTER).where(times=2))
        run = codex(cell, f"Say hello to conformance run {cell.nonce}", ws=True)
        expect(not run.ok, f"a cut stream was reported as success: {_short(run.text)}")
        expect(not cell.up.server.faults.pending(), "the injected fault was never consumed by a model call")
        expect(len(cell.up.calls()) == 2, f"upstream got {len(cell.up.calls())} model calls, expected 2")
        posts = [h for h in cell.recorder.hits if h.method == "POST" and h.path == "/v1/responses"]
        expect(len(posts) == 1 and posts[0].status == 200, f"HTTP fallback after the socket's failure: {posts}")
        cell.note = run.why() + " (after the socket's turn ended in response.failed and the HTTP retry was cut too)"
        return
    elif s == "compaction":
        _codex_compaction(cell, ws=True)
        runs, turns = 2, 3
    else:
        raise ValueError(s)
    _codex_checks_ws(cell, runs, turns)


# ============================================================================ OpenAI SDK

READ_MARKER_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string", "description": "file to read"}},
    "required": ["path"],
}


def _oa(cell: Cell) -> openai.OpenAI:
    return openai.OpenAI(base_url=cell.proxy_url + "/v1", api_key=cell.key, max_retries=0, timeout=60)


def _play_tool(cell: Cell, name: str, arguments: str) -> str:
    """The test code is the SDK user's application: it runs the requested tool."""
    expect(name == "read_marker", f"model asked for tool {name!r}")
    args = json.loads(arguments or "{}")
    expect(args.get("path") == MARKER_FILE, f"tool arguments: {arguments}")
    return cell.marker


def _expect_stream_error(cell: Cell, surface: str, consume: Callable[[], str]) -> None:
    """A cut stream must surface as an exception, never as a shorter, clean answer."""
    cell.up.push(Fault.cut(CUT_AFTER))
    try:
        text = consume()
    except (openai.APIError, anthropic.APIError, RuntimeError, AssertionError, ValueError) as exc:
        if isinstance(exc, CellError):
            raise
        cell.expect_fault_hit(surface)
        cell.note = _short(f"{type(exc).__name__}: {exc}", 160)
        return
    raise CellError(f"a cut stream ended without an error; the SDK returned {_short(text)!r}")


def openai_chat(cell: Cell) -> None:
    client = _oa(cell)
    model = cell.up.model
    tools: list[Any] = [
        {
            "type": "function",
            "function": {"name": "read_marker", "description": "Read a file", "parameters": READ_MARKER_SCHEMA},
        }
    ]

    def stream_text(messages: list[Any]) -> tuple[str, Any]:
        text, usage = "", None
        for chunk in client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage
        return text, usage

    s = cell.scenario
    prompt = f"Say hello to conformance run {cell.nonce}"
    if s in ("plain", "429-failover"):
        if s == "429-failover":
            cell.up.push(Fault.http(429))
        text, usage = stream_text([{"role": "user", "content": prompt}])
        expect(cell.nonce in text, f"answer: {_short(text)}")
        expect(usage is not None and usage.completion_tokens > 0, f"usage chunk: {usage}")
        want = 2 if s == "429-failover" else 1
        if s == "429-failover":
            cell.expect_fault_hit("")
        expect(len(cell.up.calls()) == want, f"upstream got {len(cell.up.calls())} model calls, expected {want}")
        cell.expect_system_text(caller_has_system=False)
    elif s == "tool":
        messages: list[Any] = [{"role": "user", "content": f"{TOOL_TRIGGER}: read {MARKER_FILE}"}]
        with client.chat.completions.stream(model=model, messages=messages, tools=tools) as stream:
            first = stream.get_final_completion()
        calls = first.choices[0].message.tool_calls or []
        expect(len(calls) == 1, f"expected one tool call, got {first.choices[0].message}")
        call = calls[0]
        fn = call.function  # type: ignore[union-attr]
        output = _play_tool(cell, fn.name, fn.arguments)
        messages += [
            {"role": "assistant", "tool_calls": [{"id": call.id, "type": "function", "function": fn.model_dump()}]},
            {"role": "tool", "tool_call_id": call.id, "content": output},
        ]
        with client.chat.completions.stream(model=model, messages=messages, tools=tools) as stream:
            final = stream.get_final_completion()
        answer = final.choices[0].message.content or ""
        expect(cell.marker in answer, f"final answer: {_short(answer)}")
    elif s == "multi-turn":
        history: list[Any] = [{"role": "user", "content": f"Remember the code word {cell.nonce}"}]
        reply, _ = stream_text(history)
        expect(reply, "turn 1 answered nothing")
        history += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Which code word?"}]
        reply2, _ = stream_text(history)
        expect("Which code word" in reply2, f"turn 2 answer: {_short(reply2)}")
        expect(cell.upstream_saw(cell.nonce, reply), "turn 2 reached the upstream without turn 1's history")
    elif s == "mid-stream-cut":
        _expect_stream_error(
            cell, "/v1/chat/completions", lambda: stream_text([{"role": "user", "content": prompt}])[0]
        )
    else:
        raise ValueError(s)
    client.close()


def openai_responses(cell: Cell) -> None:
    client = _oa(cell)
    model = cell.up.model
    tools: list[Any] = [
        {"type": "function", "name": "read_marker", "description": "Read a file", "parameters": READ_MARKER_SCHEMA}
    ]

    def final(**kw: Any) -> Any:
        # The strict helper: it checks event order and needs `response.completed`.
        with client.responses.stream(model=model, **kw) as stream:
            return stream.get_final_response()

    s = cell.scenario
    prompt = f"Say hello to conformance run {cell.nonce}"
    if s in ("plain", "429-failover"):
        if s == "429-failover":
            cell.up.push(Fault.http(429))
        resp = final(input=prompt)
        expect(cell.nonce in resp.output_text, f"answer: {_short(resp.output_text)}")
        expect(resp.usage is not None and resp.usage.output_tokens > 0, f"usage: {resp.usage}")
        want = 2 if s == "429-failover" else 1
        if s == "429-failover":
            cell.expect_fault_hit("")
        expect(len(cell.up.calls()) == want, f"upstream got {len(cell.up.calls())} model calls, expected {want}")
        cell.expect_system_text(caller_has_system=False)
    elif s == "tool":
        items: list[Any] = [{"role": "user", "content": f"{TOOL_TRIGGER}: read {MARKER_FILE}"}]
        first = final(input=items, tools=tools)
        calls = [o for o in first.output if o.type == "function_call"]
        expect(len(calls) == 1, f"expected one function_call, got {[o.type for o in first.output]}")
        call = calls[0]
        output = _play_tool(cell, call.name, call.arguments)
        items += [
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": output},
        ]
        resp = final(input=items, tools=tools)
        expect(cell.marker in resp.output_text, f"final answer: {_short(resp.output_text)}")
    elif s == "multi-turn":
        first = final(input=f"Remember the code word {cell.nonce}")
        expect(first.output_text, "turn 1 answered nothing")
        second = final(input="Which code word?", previous_response_id=first.id)
        expect("Which code word" in second.output_text, f"turn 2 answer: {_short(second.output_text)}")
        expect(
            cell.upstream_saw(cell.nonce, first.output_text),
            "previous_response_id: turn 2 reached the upstream without turn 1's history",
        )
    elif s == "mid-stream-cut":
        _expect_stream_error(cell, "/v1/responses", lambda: final(input=prompt).output_text)
    elif s == "compaction":
        _responses_compact(cell, client, final)
    else:
        raise ValueError(s)
    client.close()


def _responses_compact(cell: Cell, client: openai.OpenAI, final: Callable[..., Any]) -> None:
    """`client.responses.compact`, then a turn whose input is the compacted output."""
    history: list[Any] = [
        {"role": "user", "content": f"Remember the code word {cell.nonce}"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Now list the files."},
    ]
    compacted = client.responses.compact(model=cell.up.model, input=history)
    kinds = [o.type for o in compacted.output]
    expect(kinds[-1:] == ["compaction"] and kinds.count("compaction") == 1, f"compacted output: {kinds}")
    expect(compacted.usage is not None and compacted.usage.output_tokens > 0, f"usage: {compacted.usage}")
    hits = [h for h in cell.recorder.hits if h.method == "POST" and h.path == "/v1/responses/compact"]
    expect(len(hits) == 1 and hits[0].status == 200, f"POST /v1/responses/compact: {hits}")
    items = [o.model_dump(exclude_none=True) for o in compacted.output]
    resp = final(input=[*items, {"role": "user", "content": "Which code word?"}])
    expect("Which code word" in resp.output_text, f"answer after compaction: {_short(resp.output_text)}")
    carried = "fake-cmp-" if cell.up.name == "codex" else SUMMARY_HEADER
    expect(cell.upstream_saw(carried, cell.nonce), "the turn after compaction did not carry its output")
    cell.note = "POST /v1/responses/compact, then a turn on its output"


# ========================================================================= Anthropic SDK


def anthropic_messages(cell: Cell) -> None:
    client = anthropic.Anthropic(base_url=cell.proxy_url, api_key=cell.key, max_retries=0, timeout=60)
    model = cell.up.model
    tools: list[Any] = [{"name": "read_marker", "description": "Read a file", "input_schema": READ_MARKER_SCHEMA}]

    def final(messages: list[Any], **kw: Any) -> Any:
        with client.messages.stream(model=model, max_tokens=1024, messages=messages, **kw) as stream:
            return stream.get_final_message()

    def text_of(msg: Any) -> str:
        return "".join(b.text for b in msg.content if b.type == "text")

    s = cell.scenario
    prompt = f"Say hello to conformance run {cell.nonce}"
    if s in ("plain", "429-failover"):
        if s == "429-failover":
            cell.up.push(Fault.http(429))
        msg = final([{"role": "user", "content": prompt}])
        expect(cell.nonce in text_of(msg), f"answer: {_short(text_of(msg))}")
        expect(
            msg.usage.output_tokens > 0 and msg.stop_reason == "end_turn", f"usage/stop: {msg.usage} {msg.stop_reason}"
        )
        want = 2 if s == "429-failover" else 1
        if s == "429-failover":
            cell.expect_fault_hit("")
        expect(len(cell.up.calls()) == want, f"upstream got {len(cell.up.calls())} model calls, expected {want}")
        cell.expect_system_text(caller_has_system=False)
    elif s == "tool":
        messages: list[Any] = [{"role": "user", "content": f"{TOOL_TRIGGER}: read {MARKER_FILE}"}]
        first = final(messages, tools=tools)
        uses = [b for b in first.content if b.type == "tool_use"]
        expect(len(uses) == 1 and first.stop_reason == "tool_use", f"expected one tool_use, got {first.content}")
        use = uses[0]
        output = _play_tool(cell, use.name, json.dumps(use.input))
        messages += [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": output}]},
        ]
        msg = final(messages, tools=tools)
        expect(cell.marker in text_of(msg), f"final answer: {_short(text_of(msg))}")
    elif s == "multi-turn":
        history: list[Any] = [{"role": "user", "content": f"Remember the code word {cell.nonce}"}]
        reply = text_of(final(history))
        expect(reply, "turn 1 answered nothing")
        history += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Which code word?"}]
        reply2 = text_of(final(history))
        expect("Which code word" in reply2, f"turn 2 answer: {_short(reply2)}")
        expect(cell.upstream_saw(cell.nonce, reply), "turn 2 reached the upstream without turn 1's history")
    elif s == "mid-stream-cut":
        _expect_stream_error(cell, "/v1/messages", lambda: text_of(final([{"role": "user", "content": prompt}])))
    else:
        raise ValueError(s)
    client.close()


CLIENTS: dict[str, Callable[[Cell], None]] = {
    "claude-code": claude_code,
    "codex-cli": codex_cli,
    "codex-cli+ws": codex_cli_ws,
    "openai-sdk chat": openai_chat,
    "openai-sdk responses": openai_responses,
    "anthropic-sdk": anthropic_messages,
}
CLI_CLIENTS = frozenset({"claude-code", "codex-cli", "codex-cli+ws"})
