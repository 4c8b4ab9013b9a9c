"""Cheap structural checks of client bodies, run before any upstream call.

Only shapes are checked (types, required fields, roles); semantics such as "can the target
express this" belong to the translators, which raise UnsupportedFeature.
"""

from __future__ import annotations

from typing import Any

from ._core import Dialect, InvalidRequest, JSONDict, UnsupportedFeature
from .chat_request import CHAT_FIELDS, RESPONSES_FIELDS
from .messages_request import MESSAGES_FIELDS

_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_RESP_ROLES = frozenset({"user", "system", "developer", "assistant"})


def _need_str(body: JSONDict, key: str, where: str) -> None:
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise InvalidRequest(where, f"'{where}' is required and must be a non-empty string")


def _opt(body: JSONDict, key: str, types: tuple[type, ...], where: str, what: str) -> None:
    v = body.get(key)
    if v is None:
        return
    if isinstance(v, bool) and bool not in types:
        raise InvalidRequest(where, f"'{where}' must be {what}")
    if not isinstance(v, types):
        raise InvalidRequest(where, f"'{where}' must be {what}")


_NUM = (int, float)


# Responses fields that point at state kept inside one upstream account (a stored conversation,
# a stored prompt, a background job). A pool of accounts cannot honour them: forwarded, they
# make an account answer 404 for its own reasons and cool down a model every key uses.
_ACCOUNT_STATE_FIELDS = {
    "conversation": "server-side conversations are not supported through this proxy; "
    "send the history or use previous_response_id",
    "prompt": "stored prompt templates are not supported through this proxy; send the prompt text",
    "background": "background responses are not supported through this proxy",
}


def _known_fields(body: JSONDict, known: frozenset[str], api: str) -> None:
    """Unknown top-level fields are refused, as the real APIs do (OpenAI: "Unrecognized request
    argument supplied", Anthropic: "Extra inputs are not permitted"; docs/fake-rules.md), so
    nothing the proxy does not understand is forwarded blindly."""
    for key in body:
        if key not in known:
            raise InvalidRequest(key, f"unknown parameter {key!r}: it is not part of the {api} API")


def _common(body: JSONDict) -> None:
    _need_str(body, "model", "model")
    _opt(body, "stream", (bool,), "stream", "a boolean")
    _opt(body, "temperature", _NUM, "temperature", "a number")
    _opt(body, "top_p", _NUM, "top_p", "a number")
    _opt(body, "tools", (list,), "tools", "an array")
    tools = body.get("tools") or []
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise InvalidRequest(f"tools[{i}]", "each tool must be an object")


def _parts(content: Any, where: str, *, allow_null: bool = False) -> None:
    if content is None and allow_null:
        return
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(where, f"'{where}' must be a string or an array of content parts")
    for j, p in enumerate(content):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise InvalidRequest(f"{where}[{j}]", "each content part must be an object with a 'type'")


def _chat(body: JSONDict) -> None:
    _known_fields(body, CHAT_FIELDS, "Chat Completions")
    _common(body)
    if body.get("stream_options") is not None and body.get("stream") is not True:
        # api.openai.com refuses this pairing (docs/fake-rules.md, openai.stream-options).
        raise InvalidRequest("stream_options", "'stream_options' is only allowed when 'stream' is true")
    for k in ("max_tokens", "max_completion_tokens", "n"):
        _opt(body, k, (int,), k, "an integer")
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidRequest("stop", "'stop' must be a string or an array of strings")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise InvalidRequest("messages", "'messages' is required and must be a non-empty array")
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest(where, "each message must be an object")
        role = m.get("role")
        if not isinstance(role, str) or role not in _CHAT_ROLES:
            raise InvalidRequest(f"{where}.role", f"invalid role {role!r}")
        if role == "assistant":
            _parts(m.get("content"), f"{where}.content", allow_null=True)
            tcs = m.get("tool_calls")
            if tcs is not None:
                if not isinstance(tcs, list):
                    raise InvalidRequest(f"{where}.tool_calls", "'tool_calls' must be an array")
                for j, tc in enumerate(tcs):
                    tw = f"{where}.tool_calls[{j}]"
                    if not isinstance(tc, dict) or not isinstance(tc.get("id"), str):
                        raise InvalidRequest(tw, "each tool call needs a string 'id'")
                    fn = tc.get("function") if tc.get("type", "function") == "function" else tc.get("custom")
                    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                        raise InvalidRequest(tw, "each tool call needs a name")
                    if tc.get("type", "function") == "function" and not isinstance(fn.get("arguments", ""), str):
                        raise InvalidRequest(f"{tw}.function.arguments", "'arguments' must be a JSON string")
        else:
            _parts(m.get("content"), f"{where}.content")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise InvalidRequest(f"{where}.tool_call_id", "tool messages need a string 'tool_call_id'")


def _responses(body: JSONDict) -> None:
    _known_fields(body, RESPONSES_FIELDS, "Responses")
    for key, why in _ACCOUNT_STATE_FIELDS.items():
        if body.get(key) not in (None, False):
            raise UnsupportedFeature(key, why)
    _common(body)
    _opt(body, "instructions", (str,), "instructions", "a string")
    _opt(body, "max_output_tokens", (int,), "max_output_tokens", "an integer")
    inp = body.get("input")
    if inp is None and body.get("previous_response_id") is None:
        raise InvalidRequest("input", "'input' is required")
    if inp is None or isinstance(inp, str):
        return
    if not isinstance(inp, list):
        raise InvalidRequest("input", "'input' must be a string or an array of items")
    for i, item in enumerate(inp):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(where, "each input item must be an object")
        typ = item.get("type", "message")
        if not isinstance(typ, str):
            raise InvalidRequest(f"{where}.type", "'type' must be a string")
        if typ == "message":
            # isinstance first: an unhashable role (a list) must be a 400, not a TypeError.
            if not isinstance(item.get("role"), str) or item["role"] not in _RESP_ROLES:
                raise InvalidRequest(f"{where}.role", f"invalid role {item.get('role')!r}")
            _parts(item.get("content"), f"{where}.content")
        elif typ in ("function_call", "custom_tool_call"):
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise InvalidRequest(where, f"'{typ}' needs string 'call_id' and 'name'")
            key = "arguments" if typ == "function_call" else "input"
            if not isinstance(item.get(key), str):
                raise InvalidRequest(f"{where}.{key}", f"'{key}' must be a string")
        elif typ in ("function_call_output", "custom_tool_call_output"):
            if not isinstance(item.get("call_id"), str):
                raise InvalidRequest(f"{where}.call_id", "'call_id' must be a string")
            out = item.get("output")
            if not isinstance(out, (str, list)):
                raise InvalidRequest(f"{where}.output", "'output' must be a string or an array")


def _messages(body: JSONDict, *, count_tokens: bool) -> None:
    _known_fields(body, MESSAGES_FIELDS, "Anthropic Messages")
    _common(body)
    if not count_tokens:
        mt = body.get("max_tokens")
        if isinstance(mt, bool) or not isinstance(mt, int):
            raise InvalidRequest("max_tokens", "'max_tokens' is required and must be an integer")
    system = body.get("system")
    if (
        system is not None
        and not isinstance(system, str)
        and (not isinstance(system, list) or not all(isinstance(b, dict) and b.get("type") == "text" for b in system))
    ):
        raise InvalidRequest("system", "'system' must be a string or an array of text blocks")
    stop = body.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise InvalidRequest("stop_sequences", "'stop_sequences' must be an array of strings")
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        raise InvalidRequest("messages", "'messages' is required and must be an array")
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest(where, "each message must be an object")
        if m.get("role") not in ("user", "assistant", "system"):
            raise InvalidRequest(f"{where}.role", f"invalid role {m.get('role')!r}")
        _parts(m.get("content"), f"{where}.content")


def validate_request(dialect: Dialect, body: Any, *, count_tokens: bool = False) -> None:
    """Raise InvalidRequest naming the field when ``body`` is not a well-formed request.

    ``count_tokens=True`` relaxes Anthropic's required ``max_tokens`` (the
    ``/v1/messages/count_tokens`` body has none).
    """
    if not isinstance(body, dict):
        raise InvalidRequest(None, "request body must be a JSON object")
    if dialect is Dialect.CHAT:
        _chat(body)
    elif dialect is Dialect.RESPONSES:
        _responses(body)
    else:
        _messages(body, count_tokens=count_tokens)
