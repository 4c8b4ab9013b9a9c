"""Non-stream response bodies: upstream body -> canonical Responses object -> client body."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from ._common import RS_ANTHROPIC, RS_ANTHROPIC_REDACTED, custom_input_from_arguments, namespaced_call
from ._core import Dialect, JSONDict, UpstreamFormatError, as_dict, dumps_str
from .chat_request import parse_arguments
from .ids import derive_id, strip_prefix
from .messages_request import thinking_to_reasoning
from .usage import Usage, usage_from, usage_to


def response_object(
    *,
    resp_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[JSONDict],
    usage: JSONDict | None,
    incomplete_reason: str | None = None,
    error: JSONDict | None = None,
) -> JSONDict:
    """A Responses ``response`` object with every field the SDK models expect."""
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": None,
        "top_p": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "truncation": "disabled",
        "user": None,
        "metadata": {},
        "usage": usage,
    }


def call_item(item_id: str, call_id: str, name: str, arguments: str, custom_tools: Collection[str]) -> JSONDict:
    """A function call item, or a custom_tool_call when the name is one of the request's
    custom tools (they travel as ``{"input": ...}`` functions through Chat/Messages)."""
    if name in custom_tools:
        return {
            "id": item_id,
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": call_id,
            "name": name,
            "input": custom_input_from_arguments(arguments),
        }
    item = {
        "id": item_id,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
    ns = namespaced_call(custom_tools, name)
    if ns is not None:
        item["namespace"], item["name"] = ns
    return item


def message_item(item_id: str, parts: list[JSONDict]) -> JSONDict:
    return {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": parts}


def text_part(text: str) -> JSONDict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


# ------------------------------------------------------------------------- decode


def _decode_chat(body: JSONDict, custom_tools: Collection[str]) -> JSONDict:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamFormatError("choices", "upstream chat completion has no choices")
    choice = choices[0]
    msg = as_dict(choice.get("message"))
    resp_id = derive_id("resp_", body.get("id"))
    base = strip_prefix(resp_id)
    output: list[JSONDict] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(
            {
                "id": f"rs_{base}_0",
                "type": "reasoning",
                "status": "completed",
                "summary": [{"type": "summary_text", "text": reasoning}],
            }
        )
    parts: list[JSONDict] = []
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, str) and content:
        parts.append(text_part(content))
    if isinstance(msg.get("refusal"), str) and msg["refusal"]:
        parts.append({"type": "refusal", "refusal": msg["refusal"]})
    if parts:
        output.append(message_item(f"msg_{base}_{len(output)}", parts))
    for tc in msg.get("tool_calls") or []:
        fn = as_dict(as_dict(tc).get("function"))
        output.append(
            call_item(
                f"fc_{base}_{len(output)}",
                str(tc.get("id") or ""),
                str(fn.get("name") or ""),
                str(fn.get("arguments") or ""),
                custom_tools,
            )
        )
    finish = choice.get("finish_reason")
    status, reason = "completed", None
    if finish == "length":
        status, reason = "incomplete", "max_output_tokens"
    elif finish == "content_filter":
        status, reason = "incomplete", "content_filter"
    usage = usage_to(Dialect.RESPONSES, usage_from(Dialect.CHAT, body["usage"])) if body.get("usage") else None
    created = body.get("created")
    return response_object(
        resp_id=resp_id,
        created_at=created if isinstance(created, int) else int(time.time()),
        model=str(body.get("model") or ""),
        status=status,
        output=output,
        usage=usage,
        incomplete_reason=reason,
    )


def _decode_messages(body: JSONDict, custom_tools: Collection[str]) -> JSONDict:
    content = body.get("content")
    if not isinstance(content, list):
        raise UpstreamFormatError("content", "upstream message has no content array")
    resp_id = derive_id("resp_", body.get("id"))
    base = strip_prefix(resp_id)
    output: list[JSONDict] = []
    parts: list[JSONDict] = []

    def flush() -> None:
        if parts:
            output.append(message_item(f"msg_{base}_{len(output)}", list(parts)))
            parts.clear()

    for b in content:
        bt = as_dict(b).get("type")
        if bt == "text":
            parts.append(text_part(str(b.get("text") or "")))
        elif bt == "tool_use":
            flush()
            output.append(
                call_item(
                    f"fc_{base}_{len(output)}",
                    str(b.get("id") or ""),
                    str(b.get("name") or ""),
                    dumps_str(b.get("input") if b.get("input") is not None else {}),
                    custom_tools,
                )
            )
        elif bt in ("thinking", "redacted_thinking"):
            flush()
            r = thinking_to_reasoning(b)
            if r is not None:
                r["status"] = "completed"
                output.append(r)
        # Server-tool blocks cannot arise: server tools are never sent on a translated path.
    flush()
    stop = body.get("stop_reason")
    status, reason = "completed", None
    if stop in ("max_tokens", "model_context_window_exceeded"):
        status, reason = "incomplete", "max_output_tokens"
    elif stop == "refusal":
        status, reason = "incomplete", "content_filter"
    usage = usage_to(Dialect.RESPONSES, usage_from(Dialect.MESSAGES, body["usage"])) if body.get("usage") else None
    return response_object(
        resp_id=resp_id,
        created_at=int(time.time()),
        model=str(body.get("model") or ""),
        status=status,
        output=output,
        usage=usage,
        incomplete_reason=reason,
    )


def decode_response(dialect: Dialect, body: Any, *, custom_tools: Collection[str] = ()) -> JSONDict:
    """Non-stream upstream body -> canonical Responses response object.

    ``custom_tools``: names from ``custom_tool_names(canonical_request)``.
    """
    if not isinstance(body, dict):
        raise UpstreamFormatError(None, "upstream response is not a JSON object")
    if dialect is Dialect.CHAT:
        return _decode_chat(body, custom_tools)
    if dialect is Dialect.MESSAGES:
        return _decode_messages(body, custom_tools)
    if not isinstance(body.get("output"), list):
        raise UpstreamFormatError("output", "upstream response has no output array")
    return body


# ------------------------------------------------------------------------- encode


def has_tool_call(output: list[Any]) -> bool:
    return any(isinstance(i, dict) and i.get("type") in ("function_call", "custom_tool_call") for i in output)


def has_refusal(output: list[Any]) -> bool:
    return any(
        isinstance(p, dict) and p.get("type") == "refusal"
        for i in output
        if isinstance(i, dict) and i.get("type") == "message"
        for p in i.get("content") or []
    )


def chat_finish_reason(status: Any, reason: Any, tool_call: bool) -> str:
    if status == "incomplete":
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if tool_call else "stop"


def anthropic_stop_reason(status: Any, reason: Any, tool_call: bool, refusal: bool) -> str:
    if status == "incomplete":
        return "refusal" if reason == "content_filter" else "max_tokens"
    if tool_call:
        return "tool_use"
    return "refusal" if refusal else "end_turn"


def _usage(canonical: JSONDict) -> Usage:
    return usage_from(Dialect.RESPONSES, canonical.get("usage"))


def _encode_chat(c: JSONDict, model: str) -> JSONDict:
    output = [i for i in c.get("output") or [] if isinstance(i, dict)]
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[JSONDict] = []
    for item in output:
        typ = item.get("type")
        if typ == "message":
            for p in item.get("content") or []:
                if p.get("type") == "output_text":
                    texts.append(str(p.get("text") or ""))
                elif p.get("type") == "refusal":
                    refusals.append(str(p.get("refusal") or ""))
        elif typ == "function_call":
            tool_calls.append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
                }
            )
        elif typ == "custom_tool_call":
            tool_calls.append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": dumps_str({"input": item.get("input") or ""})},
                }
            )
        elif typ == "reasoning":
            reasoning.extend(str(s.get("text") or "") for s in item.get("summary") or [] if isinstance(s, dict))
    message: JSONDict = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": "".join(refusals) if refusals else None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)  # non-standard; clients ignore it
    inc = as_dict(c.get("incomplete_details"))
    created = c.get("created_at")
    return {
        "id": derive_id("chatcmpl-", c.get("id")),
        "object": "chat.completion",
        "created": created if isinstance(created, int) else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": chat_finish_reason(c.get("status"), inc.get("reason"), bool(tool_calls)),
            }
        ],
        "usage": usage_to(Dialect.CHAT, _usage(c)),
        "system_fingerprint": None,
    }


def reasoning_signature(item: JSONDict) -> str:
    """docs/protocols/translation.md#streams: how a reasoning item travels inside an Anthropic ``signature``."""
    rid = str(item.get("id") or "")
    enc = item.get("encrypted_content") or ""
    if rid.startswith(RS_ANTHROPIC):
        return str(enc)  # it was an Anthropic signature to begin with
    return f"{enc}@{rid}"


def _encode_messages(c: JSONDict, model: str) -> JSONDict:
    output = [i for i in c.get("output") or [] if isinstance(i, dict)]
    blocks: list[JSONDict] = []
    for item in output:
        typ = item.get("type")
        if typ == "message":
            for p in item.get("content") or []:
                if p.get("type") == "output_text" and p.get("text"):
                    blocks.append({"type": "text", "text": p["text"]})
                elif p.get("type") == "refusal":
                    blocks.append({"type": "text", "text": str(p.get("refusal") or "")})
        elif typ == "function_call":
            args = parse_arguments(item.get("arguments"), "output.arguments")
            if not isinstance(args, dict):
                raise UpstreamFormatError("output.arguments", "tool call arguments are not a JSON object")
            blocks.append({"type": "tool_use", "id": item.get("call_id"), "name": item.get("name"), "input": args})
        elif typ == "custom_tool_call":
            blocks.append(
                {
                    "type": "tool_use",
                    "id": item.get("call_id"),
                    "name": item.get("name"),
                    "input": {"input": item.get("input") or ""},
                }
            )
        elif typ == "reasoning":
            rid = str(item.get("id") or "")
            if rid.startswith(RS_ANTHROPIC_REDACTED):
                blocks.append({"type": "redacted_thinking", "data": item.get("encrypted_content") or ""})
                continue
            text = "".join(str(s.get("text") or "") for s in item.get("summary") or [] if isinstance(s, dict))
            if text or item.get("encrypted_content"):
                blocks.append({"type": "thinking", "thinking": text, "signature": reasoning_signature(item)})
    inc = as_dict(c.get("incomplete_details"))
    return {
        "id": derive_id("msg_", c.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": anthropic_stop_reason(
            c.get("status"), inc.get("reason"), has_tool_call(output), has_refusal(output)
        ),
        "stop_sequence": None,
        "usage": usage_to(Dialect.MESSAGES, _usage(c)),
    }


def encode_response(canonical: JSONDict, dialect: Dialect, *, model: str) -> JSONDict:
    """Canonical Responses response object -> client body in ``dialect``; ``model`` is the
    name the client asked for (never the upstream's internal name)."""
    if not isinstance(canonical, dict):
        raise UpstreamFormatError(None, "canonical response is not an object")
    if dialect is Dialect.CHAT:
        return _encode_chat(canonical, model)
    if dialect is Dialect.MESSAGES:
        return _encode_messages(canonical, model)
    out = dict(canonical)
    out["model"] = model
    return out
