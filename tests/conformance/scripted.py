"""Scripted replies for the realistic fakes, so real clients can run their *own* tools.

The fakes answer "call tool" with a call to the first offered tool and arguments sampled from
its schema (`{"command": "Paris"}`): fine for SDK tests that play the tool themselves, useless
for Claude Code or Codex CLI, which execute the call. A `ToolScript` maps a trigger phrase in
the last user text to one call per known tool name (Claude Code's `Bash`, Codex's
`exec_command`, the SDK tests' `read_marker`); the first name the client actually offered wins.

The subclasses below only add that rule in front of the fakes' own planning: everything else
(validation, stream shapes, faults, "The tool returned: <output>" after a tool result) is the
unchanged fake. The rule never fires on a turn that ends with a tool result, so a client that
resends the whole conversation (trigger included) gets the final answer instead of a loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.anthropic import AnthropicApp
from tests.fakes.base import FakeServer
from tests.fakes.codex import CodexFakeApp, FakeChatGPTAccount
from tests.fakes.gitlab import GitLabFakes, GitLabGatewayApp, GitLabInstanceApp, GitLabWorld
from tests.fakes.openai_compat import Conversation, ModelSpec, OpenAICompatApp, Plan, ToolCall, words

TOOL_TRIGGER = "CONFORMANCE-RUN-TOOL"
MARKER_FILE = "marker.txt"


@dataclass(frozen=True)
class ToolScript:
    trigger: str = TOOL_TRIGGER
    # tool name -> arguments. Order matters only when a client offers several of them.
    calls: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {
            # Claude Code 2.1.197: `cat` is read-only, so `-p` runs it without a permission prompt.
            "Bash": {"command": f"cat {MARKER_FILE}", "description": "Print the marker file"},
            # Codex CLI 0.169 (unified exec tool) and its older `shell` tool.
            "exec_command": {"cmd": f"cat {MARKER_FILE}"},
            "shell": {"command": ["cat", MARKER_FILE]},
            # The SDK scenarios' own tool, answered by the test code.
            "read_marker": {"path": MARKER_FILE},
        }
    )

    def pick(self, last_user_text: str, offered: Iterable[str]) -> tuple[str, Mapping[str, Any]] | None:
        """The scripted call for this turn, or None (let the fake plan as usual)."""
        if self.trigger not in last_user_text:
            return None
        names = set(offered)
        for name, args in self.calls.items():
            if name in names:
                return name, args
        return None


DEFAULT_SCRIPT = ToolScript()


class ScriptedOpenAICompatApp(OpenAICompatApp):
    """OpenAI-compatible fake (Chat + Responses) that follows `script` first."""

    script: ToolScript = DEFAULT_SCRIPT

    def _plan(self, conv: Conversation) -> Plan:
        # `last_role != "tool"` rather than `== "user"`: Claude Code on non-Claude models puts a
        # system message after the user turn, which translates to a trailing system message.
        picked = None if conv.last_role == "tool" else self.script.pick(conv.last_text, (n for n, _ in conv.tools))
        if picked is None:
            return super()._plan(conv)
        name, args = picked
        call = ToolCall(self._id("call_"), name, json.dumps(args))
        prompt = sum(words(t) for t in conv.texts)
        out = words(call.arguments)
        return Plan(None, [call], "tool_calls", prompt, out, min(self.cached_tokens, prompt), 0)


class ScriptedCodexFakeApp(CodexFakeApp):
    """Codex backend fake that follows `script` first (function tools only, like the fake)."""

    script: ToolScript = DEFAULT_SCRIPT

    def _final(self, body: dict[str, Any]) -> dict[str, Any]:
        final = super()._final(body)
        items = [i for i in body.get("input") or [] if isinstance(i, dict)]
        if items and items[-1].get("type") in ("function_call_output", "custom_tool_call_output"):
            return final
        offered = [t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
        picked = self.script.pick(_last_user_text(items), offered)
        if picked is not None:
            name, args = picked
            final["output"] = [
                {
                    "id": self._id("fc_"),
                    "type": "function_call",
                    "status": "completed",
                    "arguments": json.dumps(args),
                    "call_id": self._id("call_"),
                    "name": name,
                }
            ]
        return final


class ScriptedGitLabGatewayApp(GitLabGatewayApp):
    """AI gateway fake whose Anthropic path and OpenAI delegate both follow `script`."""

    script: ToolScript = DEFAULT_SCRIPT

    def __init__(self, world: GitLabWorld | None = None, **kw: Any) -> None:
        super().__init__(world, **kw)
        # Same vendor key and model list as the delegate the base class built.
        inner = self.openai
        self.openai = ScriptedOpenAICompatApp(keys=inner.keys, models=list(inner.models.values()))

    def _reply_blocks(
        self, msgs: list[Any], last: str, tools: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        scripted = _scripted_tool_use(self.script, msgs, last, tools, next(self._ids))
        return scripted or super()._reply_blocks(msgs, last, tools)


class ScriptedAnthropicApp(AnthropicApp):
    """Anthropic API fake that follows `script` first."""

    script: ToolScript = DEFAULT_SCRIPT

    def _reply_blocks(
        self, msgs: list[Any], last: str, tools: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str]:
        scripted = _scripted_tool_use(self.script, msgs, last, tools, next(self._ids))
        return scripted or super()._reply_blocks(msgs, last, tools)


def _scripted_tool_use(
    script: ToolScript, msgs: list[Any], last: str, tools: list[dict[str, Any]], n: int
) -> tuple[list[dict[str, Any]], str] | None:
    """A Messages `tool_use` answer for the script's call, or None (the fake plans as usual)."""
    if _anthropic_tool_result_last(msgs):
        return None
    picked = script.pick(last, (str(t.get("name")) for t in tools))
    if picked is None:
        return None
    name, args = picked
    return [{"type": "tool_use", "id": f"toolu_script{n:06d}", "name": name, "input": dict(args)}], "tool_use"


def _last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _anthropic_tool_result_last(msgs: list[Any]) -> bool:
    last = msgs[-1] if msgs else None
    content = last.get("content") if isinstance(last, dict) else None
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


# ------------------------------------------------------------------ servers for the suite


def serve_openai_compat(
    keys: Iterable[str], models: Iterable[str], responses_only: Iterable[str] = ()
) -> FakeServer[ScriptedOpenAICompatApp]:
    only = set(responses_only)
    specs = [ModelSpec(m, responses_only=m in only) for m in models]
    app = ScriptedOpenAICompatApp(keys=tuple(keys), models=specs, chunks=20)
    return FakeServer(app).start()


def serve_gitlab() -> GitLabFakes:
    world = GitLabWorld()
    instance = FakeServer(GitLabInstanceApp(world, chunks=10)).start()
    gateway = FakeServer(ScriptedGitLabGatewayApp(world, chunks=10)).start()
    return GitLabFakes(world, instance, gateway)  # type: ignore[arg-type]


def serve_anthropic(keys: Iterable[str], models: Iterable[str]) -> FakeServer[ScriptedAnthropicApp]:
    return FakeServer(ScriptedAnthropicApp(keys=tuple(keys), models=tuple(models), chunks=10)).start()


def serve_codex(accounts: Iterable[FakeChatGPTAccount]) -> FakeServer[ScriptedCodexFakeApp]:
    return FakeServer(ScriptedCodexFakeApp(accounts=tuple(accounts))).start()
