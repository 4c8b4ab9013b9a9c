"""Anthropic Messages request <-> canonical (Responses) request, docs/protocols/translation.md#messages-to-responses."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from ._common import (
    RS_ANTHROPIC,
    RS_ANTHROPIC_REDACTED,
    TOOL_ERROR_PREFIX,
    EncodeOptions,
    call_name_for_upstream,
    check_call_pairing,
    content_parts,
    custom_tool_parameters,
    expand_namespaces,
    input_items,
    joined_text,
    parse_data_url,
    reject_if,
)
from ._core import InvalidRequest, JSONDict, UnsupportedFeature, as_dict, dumps_str
from .chat_request import parse_arguments, reject_unencodable

log = logging.getLogger(__name__)

# Hints and Anthropic-only bookkeeping with no canonical meaning (docs/protocols/translation.md#messages-to-responses,
# docs/protocols/translation.md#rejected-or-dropped).
_MSG_DROPPED = frozenset({"metadata", "context_management", "top_k", "service_tier", "cache_control"})
_MSG_HANDLED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "temperature",
        "top_p",
        "stop_sequences",
        "output_config",
        "container",
        "mcp_servers",
    }
)
# Every top-level field of an Anthropic Messages request (API reference, incl. the beta fields
# Claude Code sends); anything else is refused before dispatch (validate.py), like Anthropic does.
MESSAGES_FIELDS = _MSG_HANDLED | _MSG_DROPPED
# Claude Code's first system block changes on every request (a build counter) and means
# nothing to other models; keeping it would break the upstream's prompt-cache prefix.
_BILLING_HEADER = "x-anthropic-billing-header:"


def _stable_id(prefix: str, blob: str) -> str:
    return prefix + hashlib.sha256(blob.encode()).hexdigest()[:24]


def thinking_to_reasoning(block: JSONDict) -> JSONDict | None:
    """Anthropic thinking block -> canonical reasoning item (docs/protocols/translation.md#messages-to-responses
    signature rule)."""
    if block.get("type") == "redacted_thinking":
        data = str(block.get("data", ""))
        return {
            "type": "reasoning",
            "id": _stable_id(RS_ANTHROPIC_REDACTED, data),
            "summary": [],
            "encrypted_content": data,
        }
    sig = str(block.get("signature") or "")
    text = str(block.get("thinking") or "")
    summary = [{"type": "summary_text", "text": text}] if text else []
    enc, at, rid = sig.rpartition("@")
    if at and rid.startswith("rs_") and not rid.startswith(RS_ANTHROPIC):
        # Our own packing of an OpenAI reasoning item: "<encrypted_content>@<reasoning_id>".
        if not enc:
            return None  # nothing replayable (upstream sent no encrypted content)
        return {"type": "reasoning", "id": rid, "summary": summary, "encrypted_content": enc}
    if not sig:
        return None
    return {"type": "reasoning", "id": _stable_id(RS_ANTHROPIC, sig), "summary": summary, "encrypted_content": sig}


def _image_part(src: Any, where: str) -> JSONDict:
    if not isinstance(src, dict):
        raise InvalidRequest(f"{where}.source", "'source' must be an object")
    st = src.get("type")
    if st == "base64":
        return {
            "type": "input_image",
            "image_url": f"data:{src.get('media_type')};base64,{src.get('data', '')}",
            "detail": "auto",
        }
    if st == "url":
        return {"type": "input_image", "image_url": src.get("url"), "detail": "auto"}
    raise UnsupportedFeature(f"{where}.source.type", f"image source {st!r} is not supported")


def _document_part(block: JSONDict, where: str) -> JSONDict:
    src = as_dict(block.get("source"))
    st = src.get("type")
    name = block.get("title") or "document.pdf"
    if st == "base64":
        return {
            "type": "input_file",
            "file_data": f"data:{src.get('media_type')};base64,{src.get('data', '')}",
            "filename": name,
        }
    if st == "url":
        return {"type": "input_file", "file_url": src.get("url")}
    if st == "text":
        return {"type": "input_text", "text": str(src.get("data", ""))}
    raise UnsupportedFeature(f"{where}.source.type", f"document source {st!r} is not supported")


def _tool_result(block: JSONDict, where: str) -> JSONDict:
    content = block.get("content")
    output: Any
    if content is None or isinstance(content, str):
        output = content or ""
    else:
        parts: list[JSONDict] = []
        for j, b in enumerate(content):
            bt = b.get("type")
            if bt == "text":
                parts.append({"type": "input_text", "text": b.get("text", "")})
            elif bt == "image":
                parts.append(_image_part(b.get("source"), f"{where}.content[{j}]"))
            else:
                raise UnsupportedFeature(f"{where}.content[{j}].type", f"tool_result block {bt!r} is not supported")
        output = "".join(p["text"] for p in parts) if all(p["type"] == "input_text" for p in parts) else parts
    if block.get("is_error"):
        if isinstance(output, str):
            output = TOOL_ERROR_PREFIX + output
        else:
            output = [{"type": "input_text", "text": TOOL_ERROR_PREFIX.strip()}, *output]
    return {"type": "function_call_output", "call_id": block.get("tool_use_id"), "output": output}


def _decode_messages(msgs: list[JSONDict]) -> list[JSONDict]:
    items: list[JSONDict] = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        role = m["role"]
        content = m.get("content")
        blocks: list[JSONDict] = (
            [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        )
        if role == "system":
            items.append(
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": joined_text(blocks, f"{where}.content")}],
                }
            )
            continue
        pending: list[JSONDict] = []  # message parts waiting to become one message item

        def flush(role: str = role, pending: list[JSONDict] = pending) -> None:
            if pending:
                items.append({"type": "message", "role": role, "content": list(pending)})
                pending.clear()

        for j, b in enumerate(blocks):
            bw = f"{where}.content[{j}]"
            bt = b.get("type")
            if bt == "text":
                if role == "assistant":
                    if b.get("text"):
                        pending.append({"type": "output_text", "text": b["text"], "annotations": []})
                else:
                    pending.append({"type": "input_text", "text": b.get("text", "")})
            elif bt == "image" and role == "user":
                pending.append(_image_part(b.get("source"), bw))
            elif bt == "document" and role == "user":
                pending.append(_document_part(b, bw))
            elif bt == "tool_result" and role == "user":
                flush()
                items.append(_tool_result(b, bw))
            elif bt == "tool_use" and role == "assistant":
                flush()
                if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                    raise InvalidRequest(bw, "tool_use needs string 'id' and 'name'")
                items.append(
                    {
                        "type": "function_call",
                        "call_id": b["id"],
                        "name": b["name"],
                        "arguments": dumps_str(b.get("input") if b.get("input") is not None else {}),
                    }
                )
            elif bt in ("thinking", "redacted_thinking") and role == "assistant":
                flush()
                r = thinking_to_reasoning(b)
                if r is not None:
                    items.append(r)
            else:
                raise UnsupportedFeature(f"{bw}.type", f"{role} content block {bt!r} is not supported")
        flush()
    return items


def _decode_tools(tools: list[JSONDict]) -> list[JSONDict]:
    out: list[JSONDict] = []
    for i, t in enumerate(tools):
        typ = t.get("type")
        if typ not in (None, "custom"):
            raise UnsupportedFeature(f"tools[{i}].type", f"server tool {typ!r} cannot run on this upstream")
        if not isinstance(t.get("name"), str):
            raise InvalidRequest(f"tools[{i}].name", "tools need a string 'name'")
        item: JSONDict = {"type": "function", "name": t["name"]}
        if t.get("description") is not None:
            item["description"] = t["description"]
        item["parameters"] = t.get("input_schema") or {"type": "object", "properties": {}}
        item["strict"] = False
        out.append(item)
    return out


def _budget_to_effort(budget: Any) -> str:
    # docs/protocols/translation.md#messages-to-responses: a bare budget has no exact equivalent; thresholds mirror
    # the encode table.
    b = budget if isinstance(budget, int) and not isinstance(budget, bool) else 0
    if b < 4096:
        return "low"
    if b < 16384:
        return "medium"
    return "high"


def decode_messages_request(body: JSONDict) -> JSONDict:
    for key in body:
        if key in _MSG_DROPPED:
            log.debug("dropping messages field %s: no equivalent in the canonical form", key)
        elif key not in _MSG_HANDLED:
            raise UnsupportedFeature(key, "unknown field cannot be translated")
    reject_if(body, "container", "code-execution containers are not supported on a translated path")
    reject_if(body, "mcp_servers", "MCP connectors are not supported on a translated path")
    out: JSONDict = {"model": body["model"]}
    system = body.get("system")
    if isinstance(system, str) and system:
        out["instructions"] = system
    elif isinstance(system, list):
        texts = [b.get("text", "") for b in system if not str(b.get("text", "")).startswith(_BILLING_HEADER)]
        if texts:
            out["instructions"] = "\n\n".join(texts)
    items = _decode_messages(body["messages"])
    check_call_pairing(items, "messages")
    out["input"] = items
    if body.get("max_tokens") is not None:
        out["max_output_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p", "stream"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("tools"):
        out["tools"] = _decode_tools(body["tools"])
    tc = body.get("tool_choice")
    if isinstance(tc, dict):
        typ = tc.get("type")
        if typ == "tool":
            out["tool_choice"] = {"type": "function", "name": tc.get("name")}
        elif typ in ("auto", "any", "none"):
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[typ]
        else:
            raise UnsupportedFeature("tool_choice.type", f"tool_choice {typ!r} is not supported")
        if tc.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
        if not out.get("tools"):
            out.pop("tool_choice", None)
    elif tc is not None:
        raise InvalidRequest("tool_choice", "'tool_choice' must be an object")
    oc = as_dict(body.get("output_config"))
    for key in oc:
        if key not in ("effort", "format"):
            raise UnsupportedFeature(f"output_config.{key}", "unknown output_config field")
    thinking = as_dict(body.get("thinking"))
    ttype = thinking.get("type")
    if ttype in ("enabled", "adaptive"):
        effort = oc.get("effort") or (_budget_to_effort(thinking.get("budget_tokens")) if ttype == "enabled" else None)
        out["reasoning"] = {"summary": "auto", **({"effort": effort} if effort else {})}
    elif oc.get("effort"):
        out["reasoning"] = {"effort": oc["effort"]}
    fmt = oc.get("format")
    if isinstance(fmt, dict):
        if fmt.get("type") != "json_schema":
            raise UnsupportedFeature("output_config.format.type", "only json_schema output formats are supported")
        out["text"] = {
            "format": {"type": "json_schema", "name": "output", "schema": fmt.get("schema") or {}, "strict": True}
        }
    return out


# ------------------------------------------------------------- encode: canonical -> messages


def _encode_image(p: JSONDict, where: str) -> JSONDict:
    url = p.get("image_url")
    if not isinstance(url, str):
        raise UnsupportedFeature(f"{where}.file_id", "Anthropic images need a URL or inline data")
    parsed = parse_data_url(url)
    if parsed is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _encode_user_part(p: JSONDict, where: str) -> JSONDict:
    typ = p.get("type")
    if typ in ("input_text", "output_text", "text"):
        return {"type": "text", "text": p.get("text", "")}
    if typ == "input_image":
        return _encode_image(p, where)
    if typ == "input_file":
        if isinstance(p.get("file_data"), str):
            parsed = parse_data_url(p["file_data"])
            if parsed is None:
                raise UnsupportedFeature(f"{where}.file_data", "file data must be a base64 data URL")
            doc: JSONDict = {
                "type": "document",
                "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]},
            }
            if p.get("filename"):
                doc["title"] = p["filename"]
            return doc
        if isinstance(p.get("file_url"), str):
            return {"type": "document", "source": {"type": "url", "url": p["file_url"]}}
        raise UnsupportedFeature(f"{where}.file_id", "Anthropic cannot read OpenAI file ids")
    raise UnsupportedFeature(where, f"content part type {typ!r} cannot be sent to an Anthropic upstream")


def _encode_tool_output(item: JSONDict, where: str) -> JSONDict:
    out = item.get("output")
    block: JSONDict = {"type": "tool_result", "tool_use_id": item["call_id"]}
    if isinstance(out, str) or out is None:
        text = out or ""
        if text.startswith(TOOL_ERROR_PREFIX):
            block["is_error"] = True
            text = text[len(TOOL_ERROR_PREFIX) :]
        block["content"] = text
        return block
    parts: list[JSONDict] = []
    for j, p in enumerate(out):
        pw = f"{where}.output[{j}]"
        if p.get("type") in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": p.get("text", "")})
        elif p.get("type") == "input_image":
            parts.append(_encode_image(p, pw))
        else:
            raise UnsupportedFeature(pw, f"tool output part {p.get('type')!r} cannot be sent to Anthropic")
    if parts and parts[0]["type"] == "text" and parts[0]["text"] == TOOL_ERROR_PREFIX.strip():
        block["is_error"] = True
        parts = parts[1:]
    block["content"] = parts
    return block


def _reasoning_block(item: JSONDict) -> JSONDict | None:
    rid = str(item.get("id") or "")
    enc = item.get("encrypted_content")
    if not isinstance(enc, str) or not enc:
        return None
    if rid.startswith(RS_ANTHROPIC_REDACTED):
        return {"type": "redacted_thinking", "data": enc}
    if rid.startswith(RS_ANTHROPIC):
        text = "".join(s.get("text", "") for s in item.get("summary") or [] if isinstance(s, dict))
        return {"type": "thinking", "thinking": text, "signature": enc}
    # an OpenAI reasoning blob: Anthropic cannot verify it (docs/protocols/translation.md#rejected-or-dropped foreign
    # signature)
    return None


def encode_messages_request(c: JSONDict, opts: EncodeOptions) -> JSONDict:
    reject_unencodable(c)
    items = input_items(c)
    check_call_pairing(items)
    system, turns = _encode_turns(c, items, opts)
    return _messages_body(c, opts, system, turns)


def _encode_turns(c: JSONDict, items: list[JSONDict], opts: EncodeOptions) -> tuple[list[str], list[JSONDict]]:
    """Canonical items -> (system texts, Anthropic turns)."""
    system: list[str] = [c["instructions"]] if c.get("instructions") else []
    turns: list[JSONDict] = []

    def add(role: str, blocks: list[JSONDict]) -> None:
        # Consecutive same-role turns merge; tool_result blocks must lead their user turn.
        if turns and turns[-1]["role"] == role and role != "system":
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    leading = True
    for i, item in enumerate(items):
        where = f"input[{i}]"
        typ = item.get("type")
        if typ == "message":
            role = item.get("role")
            parts = [p for p in content_parts(item.get("content"), str(role)) if isinstance(p, dict)]
            if role in ("system", "developer"):
                text = joined_text(parts, f"{where}.content")
                if leading or not opts.anthropic_mid_conversation_system:
                    # position lost when folded (docs/protocols/translation.md#responses-to-messages)
                    system.append(text)
                else:
                    turns.append({"role": "system", "content": text})
                continue
            leading = False
            if role == "assistant":
                blocks: list[JSONDict] = []
                for j, p in enumerate(parts):
                    if p.get("type") in ("output_text", "input_text", "text"):
                        if p.get("text"):
                            blocks.append({"type": "text", "text": p["text"]})
                    elif p.get("type") == "refusal":
                        blocks.append({"type": "text", "text": p.get("refusal", "")})
                    else:
                        raise UnsupportedFeature(f"{where}.content[{j}]", "assistant part cannot be sent to Anthropic")
                if blocks:
                    add("assistant", blocks)
            else:
                add("user", [_encode_user_part(p, f"{where}.content[{j}]") for j, p in enumerate(parts)])
        elif typ == "function_call":
            leading = False
            args = parse_arguments(item.get("arguments"), f"{where}.arguments")
            if not isinstance(args, dict):
                raise UnsupportedFeature(f"{where}.arguments", "tool call arguments must be a JSON object")
            add(
                "assistant",
                [{"type": "tool_use", "id": item["call_id"], "name": call_name_for_upstream(item), "input": args}],
            )
        elif typ == "custom_tool_call":
            leading = False
            add(
                "assistant",
                [
                    {
                        "type": "tool_use",
                        "id": item["call_id"],
                        "name": item["name"],
                        "input": {"input": item.get("input", "")},
                    }
                ],
            )
        elif typ in ("function_call_output", "custom_tool_call_output"):
            leading = False
            add("user", [_encode_tool_output(item, where)])
        elif typ == "reasoning":
            block = _reasoning_block(item)
            if block is not None:
                add("assistant", [block])
        else:
            raise UnsupportedFeature(f"{where}.type", f"input item {typ!r} cannot be sent to an Anthropic upstream")
    # tool_result blocks must come first in their user turn.
    for t in turns:
        if t["role"] == "user" and isinstance(t["content"], list):
            t["content"].sort(key=lambda b: 0 if b.get("type") == "tool_result" else 1)
    if not turns:
        raise InvalidRequest("input", "the request has no messages")
    return system, turns


def _messages_body(c: JSONDict, opts: EncodeOptions, system: list[str], turns: list[JSONDict]) -> JSONDict:
    body: JSONDict = {"model": c["model"]}
    max_tokens = c.get("max_output_tokens") or opts.default_max_tokens
    body["max_tokens"] = max_tokens
    body["messages"] = turns
    if system:
        body["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p", "stream"):
        if c.get(key) is not None:
            body[key] = c[key]
    if c.get("stop"):
        body["stop_sequences"] = c["stop"]
    user = c.get("safety_identifier") or c.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    tools = _encode_tools(c.get("tools") or [], opts)
    if tools:
        body["tools"] = tools
        tc = _encode_tool_choice(c.get("tool_choice"), opts)
        if c.get("parallel_tool_calls") is False:
            tc = tc or {"type": "auto"}
            tc["disable_parallel_tool_use"] = True
        if tc is not None:
            body["tool_choice"] = tc
    reasoning = c.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort and effort != "none":
        budget = min(opts.thinking_budgets.get(str(effort), opts.thinking_budgets.get("medium", 8192)), max_tokens - 1)
        if budget >= 1024:  # Anthropic's minimum; below it thinking cannot be enabled
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            # Anthropic rejects sampling changes with thinking on; they are hints
            # (docs/protocols/translation.md#rejected-or-dropped).
            body.pop("temperature", None)
            body.pop("top_p", None)
    fmt = as_dict(c.get("text")).get("format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise UnsupportedFeature("text.format", "structured output formats cannot be sent to an Anthropic upstream")
    return body


def _encode_tools(tools: list[JSONDict], opts: EncodeOptions) -> list[JSONDict]:
    out: list[JSONDict] = []
    for i, t in expand_namespaces(tools):
        typ = t.get("type")
        if typ == "function":
            tool: JSONDict = {"name": t.get("name")}
            if t.get("description") is not None:
                tool["description"] = t["description"]
            tool["input_schema"] = t.get("parameters") or {"type": "object", "properties": {}}
            out.append(tool)
        elif typ == "custom":
            tool = {"name": t.get("name")}
            if t.get("description") is not None:
                tool["description"] = t["description"]
            tool["input_schema"] = custom_tool_parameters(t)
            out.append(tool)
        else:
            raise UnsupportedFeature(f"tools[{i}].type", f"tool type {typ!r} cannot run on this upstream")
    return out


def _encode_tool_choice(tc: Any, opts: EncodeOptions) -> JSONDict | None:
    if tc is None:
        return None
    if isinstance(tc, str):
        if tc not in ("auto", "required", "none"):
            raise InvalidRequest("tool_choice", f"invalid tool_choice {tc!r}")
        return {"type": {"auto": "auto", "required": "any", "none": "none"}[tc]}
    typ = tc.get("type") if isinstance(tc, dict) else None
    if typ in ("function", "custom"):
        return {"type": "tool", "name": tc.get("name")}
    raise UnsupportedFeature("tool_choice", f"tool_choice {typ!r} cannot be expressed for Anthropic")
