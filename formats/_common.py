"""Helpers shared by the request/response translators."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._core import InvalidRequest, JSONDict, UnsupportedFeature

# Reasoning items that came from Anthropic carry an Anthropic signature in
# ``encrypted_content``. The id prefix marks them so that the Responses encoder can drop
# them (an OpenAI upstream cannot verify them) and the Messages encoder can replay them.
RS_ANTHROPIC = "rs_ant_"
RS_ANTHROPIC_REDACTED = "rs_ant_r_"  # also starts with RS_ANTHROPIC: check it first

# Anthropic's tool_result.is_error has no Responses field; the flag rides in the text so a
# model behind any upstream still sees it, and the Messages encoder turns it back.
TOOL_ERROR_PREFIX = "[tool error] "

# Hosted (server-side) Responses tools: they only exist at OpenAI. Towards Chat/Messages an
# offered one is dropped (`hosted_tools_drop`) and a forced one is refused.
HOSTED_TOOL_TYPES = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "web_search_2025_08_26",
        "file_search",
        "image_generation",
        "code_interpreter",
        "mcp",
        "computer_use_preview",
        "computer_use",
        "local_shell",
        "shell",
        "apply_patch",
    }
)


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    """Per-target knobs for encode_request (the catalog decides them per target/model)."""

    # Many OpenAI-compatible servers reject role "developer"; default to "system".
    chat_developer_role: str = "system"
    # "max_completion_tokens" (OpenAI) or "max_tokens" (older compatible servers).
    chat_max_tokens_field: str = "max_completion_tokens"
    # Anthropic requires max_tokens; used when the client gave no cap.
    default_max_tokens: int = 8192
    # Anthropic thinking budgets per Responses reasoning effort (docs/protocols/translation.md#responses-to-messages:
    # configured table).
    thinking_budgets: dict[str, int] = field(
        default_factory=lambda: {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32000}
    )
    # Keep later developer/system items in place as role "system" messages (beta
    # mid-conversation-system-2026-04-07) instead of folding them into ``system``.
    anthropic_mid_conversation_system: bool = False


DEFAULT_OPTIONS = EncodeOptions()


def input_items(canonical: JSONDict) -> list[JSONDict]:
    """Canonical ``input`` as a list of typed items (string input -> one user message)."""
    inp = canonical.get("input")
    if inp is None:
        return []
    if isinstance(inp, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": inp}]}]
    return [item if "type" in item else {"type": "message", **item} for item in inp]


def content_parts(content: Any, role: str) -> list[JSONDict]:
    """Message content as parts; a bare string becomes one text part of the right kind."""
    if isinstance(content, str):
        return [{"type": "output_text" if role == "assistant" else "input_text", "text": content}]
    if isinstance(content, list):
        return content
    return []


def joined_text(parts: list[JSONDict], field_name: str) -> str:
    out: list[str] = []
    for i, p in enumerate(parts):
        if p.get("type") not in ("input_text", "output_text", "text"):
            raise UnsupportedFeature(f"{field_name}[{i}]", f"part type {p.get('type')!r} cannot be carried here")
        t = p.get("text")
        if not isinstance(t, str):
            raise InvalidRequest(f"{field_name}[{i}].text", "'text' must be a string")
        out.append(t)
    return "".join(out)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<media>;base64,<data>`` -> (media, data); None for anything else."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[: -len(";base64")] or "application/octet-stream", data


def custom_tool_parameters(tool: JSONDict) -> JSONDict:
    """A freeform (custom) tool carried as a function with one string argument ``input``."""
    desc = "Free-form input for this tool, passed verbatim."
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        # The target cannot enforce the grammar, so at least show it to the model.
        desc += f" It must match this {fmt.get('syntax', '')} grammar:\n{fmt.get('definition', '')}"
    return {
        "type": "object",
        "properties": {"input": {"type": "string", "description": desc}},
        "required": ["input"],
        "additionalProperties": False,
    }


NAMESPACE_SEPARATOR = "__"


def expand_namespaces(tools: list[JSONDict]) -> list[tuple[int, JSONDict]]:
    """``(index in tools, tool)`` with each Codex ``namespace`` tool replaced by its member
    functions, named ``<namespace>__<name>`` (docs/protocols/translation.md#responses-to-chat): Chat and Messages have
    no tool
    grouping, and refusing the namespace made every Codex CLI request on a non-bundled model
    fail. Calls to a member are mapped back (``custom_tool_names`` / ``namespaced_call``)."""
    out: list[tuple[int, JSONDict]] = []
    for i, t in enumerate(tools):
        if not (isinstance(t, dict) and t.get("type") == "namespace"):
            out.append((i, t))
            continue
        ns, members = t.get("name"), t.get("tools")
        if not isinstance(ns, str) or not isinstance(members, list):
            raise InvalidRequest(f"tools[{i}]", "namespace tools need 'name' and 'tools'")
        for j, member in enumerate(members):
            if not isinstance(member, dict) or member.get("type") != "function":
                raise UnsupportedFeature(f"tools[{i}].tools[{j}].type", "only function tools can be namespace members")
            out.append((i, {**member, "name": flat_name(ns, str(member.get("name")))}))
    return out


class ToolNames(frozenset[str]):
    """The request's custom tool names (a frozenset, as before), plus the flattened namespace
    members: flat name -> (namespace, member), so calls come back under their own names."""

    namespaced: dict[str, tuple[str, str]]

    def __new__(cls, custom: Collection[str], namespaced: dict[str, tuple[str, str]]) -> ToolNames:
        obj = super().__new__(cls, custom)
        obj.namespaced = namespaced
        return obj


def custom_tool_names(canonical: JSONDict) -> frozenset[str]:
    """Names of the request's custom tools: pass to decode_response / StreamTranslator so
    that calls coming back as functions become ``custom_tool_call`` items again (and calls to
    flattened namespace members become namespaced function calls again)."""
    tools = [t for t in canonical.get("tools") or [] if isinstance(t, dict)]
    custom = [t["name"] for t in tools if t.get("type") == "custom" and isinstance(t.get("name"), str)]
    namespaced: dict[str, tuple[str, str]] = {}
    for t in tools:
        if t.get("type") == "namespace" and isinstance(t.get("name"), str):
            for member in t.get("tools") or []:
                if isinstance(member, dict) and isinstance(member.get("name"), str):
                    namespaced[flat_name(t["name"], member["name"])] = (t["name"], member["name"])
    return ToolNames(custom, namespaced)


def flat_name(namespace: str, name: str) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}"


def call_name_for_upstream(item: JSONDict) -> Any:
    """A function_call item from history carries its namespace separately; Chat and Messages
    only know the flattened name the upstream saw."""
    ns = item.get("namespace")
    return flat_name(ns, item["name"]) if isinstance(ns, str) and ns else item["name"]


def namespaced_call(tools: Collection[str], name: str) -> tuple[str, str] | None:
    return getattr(tools, "namespaced", {}).get(name)


def custom_input_from_arguments(arguments: str) -> str:
    """Undo the ``{"input": "..."}`` wrapping; a model that ignored the schema keeps its text."""
    try:
        obj = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(obj, dict) and isinstance(obj.get("input"), str):
        return str(obj["input"])
    return arguments


def check_call_pairing(items: list[JSONDict], field_name: str = "input") -> None:
    """Reject duplicate call ids and tool outputs without a preceding call
    (docs/protocols/translation.md#rejected-or-dropped)."""
    calls: set[str] = set()
    for i, item in enumerate(items):
        typ = item.get("type")
        if typ in ("function_call", "custom_tool_call"):
            cid = item.get("call_id")
            if cid in calls:
                raise UnsupportedFeature(f"{field_name}[{i}].call_id", f"duplicate call id {cid!r}")
            calls.add(str(cid))
        elif typ in ("function_call_output", "custom_tool_call_output"):
            cid = item.get("call_id")
            if cid not in calls:
                raise UnsupportedFeature(f"{field_name}[{i}].call_id", f"tool output for unknown call id {cid!r}")


def reject_if(body: JSONDict, key: str, reason: str) -> None:
    v = body.get(key)
    if v is not None and v is not False and v != [] and v != {}:
        raise UnsupportedFeature(key, reason)


def _hosted(tool: Any) -> str | None:
    typ = tool.get("type") if isinstance(tool, dict) else None
    return typ if isinstance(typ, str) and typ in HOSTED_TOOL_TYPES else None


def hosted_tools_drop(c: JSONDict) -> tuple[JSONDict, tuple[str, ...]]:
    """The canonical request without the hosted tools it only *offers*, for a target that
    cannot run them (Chat, Messages), and the dropped tool types in order.

    Codex CLI offers `web_search` on every turn; refusing it made every turn fail on such a
    target. A request that *forces* a hosted tool is refused instead (UnsupportedFeature naming
    the field), because dropping it would silently answer a different question: `tool_choice`
    names it, or every offered tool is hosted and a tool call is required.
    """
    tools = c.get("tools")
    if not isinstance(tools, list) or not any(_hosted(t) for t in tools):
        return c, ()
    dropped = tuple(dict.fromkeys(typ for t in tools if (typ := _hosted(t))))
    kept = [t for t in tools if not _hosted(t)]
    tc = c.get("tool_choice")
    tc_type = tc.get("type") if isinstance(tc, dict) else None
    if _hosted(tc):
        raise UnsupportedFeature(
            "tool_choice", f"tool_choice forces the hosted tool {tc_type!r}, which cannot run on this upstream"
        )
    if isinstance(tc, dict) and tc_type == "allowed_tools":
        allowed = [t for t in tc.get("tools") or [] if not _hosted(t)]
        if not allowed and tc.get("mode") == "required":
            raise UnsupportedFeature(
                "tool_choice", "tool_choice requires a hosted tool, which cannot run on this upstream"
            )
        tc = {**tc, "tools": allowed} if allowed else "none"
    if not kept and tc == "required":
        first = next(i for i, t in enumerate(tools) if _hosted(t))
        raise UnsupportedFeature(
            f"tools[{first}].type",
            f"tool type {_hosted(tools[first])!r} cannot run on this upstream, and a tool call is required",
        )
    out = {k: v for k, v in c.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}
    if kept:
        out["tools"] = kept
        for key, value in (("tool_choice", tc), ("parallel_tool_calls", c.get("parallel_tool_calls"))):
            if value is not None:
                out[key] = value
    return out, dropped
