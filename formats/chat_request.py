"""Chat Completions request <-> canonical (Responses) request, docs/protocols/translation.md#chat-to-responses."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ._common import (
    EncodeOptions,
    call_name_for_upstream,
    check_call_pairing,
    content_parts,
    custom_tool_parameters,
    expand_namespaces,
    input_items,
    joined_text,
    reject_if,
)
from ._core import InvalidRequest, JSONDict, UnsupportedFeature, as_dict, dumps_str

log = logging.getLogger(__name__)

# Sampling hints with no Responses/Messages equivalent: dropped (docs/protocols/translation.md#rejected-or-dropped),
# logged at debug.
_CHAT_DROPPED = frozenset(
    {"presence_penalty", "frequency_penalty", "seed", "prediction", "store", "stream_options", "prompt_cache_retention"}
)
_CHAT_SAME = (
    "temperature",
    "top_p",
    "user",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "parallel_tool_calls",
    "stream",
)
_CHAT_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_completion_tokens",
        "max_tokens",
        "tools",
        "tool_choice",
        "response_format",
        "reasoning_effort",
        "verbosity",
        "stop",
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
        "audio",
        "web_search_options",
        "functions",
        "function_call",
        *_CHAT_SAME,
    }
)
# Every top-level field of a Chat Completions request (the API reference's list): anything
# else is refused before dispatch (validate.py), like api.openai.com does.
CHAT_FIELDS = _CHAT_HANDLED | _CHAT_DROPPED


# ---------------------------------------------------------------- decode: chat -> canonical


def _user_part(p: JSONDict, where: str) -> JSONDict:
    typ = p.get("type")
    if typ == "text":
        return {"type": "input_text", "text": p.get("text", "")}
    if typ == "image_url":
        iu = p.get("image_url")
        url = iu.get("url") if isinstance(iu, dict) else iu
        if not isinstance(url, str):
            raise InvalidRequest(f"{where}.image_url.url", "'url' must be a string")
        out: JSONDict = {"type": "input_image", "image_url": url}
        if isinstance(iu, dict) and iu.get("detail"):
            out["detail"] = iu["detail"]
        else:
            out["detail"] = "auto"
        return out
    if typ == "file":
        f = as_dict(p.get("file"))
        out = {"type": "input_file"}
        for k in ("file_data", "file_id", "filename"):
            if f.get(k) is not None:
                out[k] = f[k]
        if "file_data" not in out and "file_id" not in out:
            raise InvalidRequest(f"{where}.file", "'file' needs 'file_data' or 'file_id'")
        return out
    if typ == "input_audio":
        raise UnsupportedFeature(where, "audio input is not supported by any upstream")
    raise UnsupportedFeature(where, f"content part type {typ!r} is not supported")


def _assistant_parts(content: Any, where: str) -> list[JSONDict]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "output_text", "text": content, "annotations": []}]
    out: list[JSONDict] = []
    for j, p in enumerate(content):
        typ = p.get("type")
        if typ == "text":
            if p.get("text"):
                out.append({"type": "output_text", "text": p["text"], "annotations": []})
        elif typ == "refusal":
            out.append({"type": "refusal", "refusal": p.get("refusal", "")})
        else:
            raise UnsupportedFeature(f"{where}[{j}]", f"assistant part type {typ!r} is not supported")
    return out


def _text_only(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return joined_text(content, where)


def _decode_tools(tools: list[JSONDict]) -> list[JSONDict]:
    out: list[JSONDict] = []
    for i, t in enumerate(tools):
        typ = t.get("type", "function")
        if typ == "function":
            fn = t.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest(f"tools[{i}].function", "function tools need 'function.name'")
            item: JSONDict = {"type": "function", "name": fn["name"]}
            if fn.get("description") is not None:
                item["description"] = fn["description"]
            item["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
            item["strict"] = bool(fn.get("strict") or False)
            out.append(item)
        elif typ == "custom":
            c = t.get("custom")
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise InvalidRequest(f"tools[{i}].custom", "custom tools need 'custom.name'")
            item = {"type": "custom", "name": c["name"]}
            for k in ("description", "format"):
                if c.get(k) is not None:
                    item[k] = c[k]
            out.append(item)
        else:
            raise UnsupportedFeature(f"tools[{i}].type", f"tool type {typ!r} is not supported")
    return out


def _decode_tool_choice(tc: Any) -> Any:
    if isinstance(tc, str):
        if tc not in ("none", "auto", "required"):
            raise InvalidRequest("tool_choice", f"invalid tool_choice {tc!r}")
        return tc
    if not isinstance(tc, dict):
        raise InvalidRequest("tool_choice", "'tool_choice' must be a string or an object")
    typ = tc.get("type")
    if typ in ("function", "custom"):
        inner = tc.get(typ)
        name = inner.get("name") if isinstance(inner, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest("tool_choice", "tool_choice needs a tool name")
        return {"type": typ, "name": name}
    if typ == "allowed_tools":
        at = as_dict(tc.get("allowed_tools"))
        tools = []
        for t in at.get("tools") or []:
            kind = t.get("type", "function")
            inner = as_dict(t.get(kind))
            tools.append({"type": kind, "name": inner.get("name")})
        return {"type": "allowed_tools", "mode": at.get("mode", "auto"), "tools": tools}
    raise UnsupportedFeature("tool_choice", f"tool_choice type {typ!r} is not supported")


def _decode_response_format(rf: Any) -> JSONDict:
    if not isinstance(rf, dict):
        raise InvalidRequest("response_format", "'response_format' must be an object")
    typ = rf.get("type")
    if typ in ("text", "json_object"):
        return {"type": typ}
    if typ == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("name"), str):
            raise InvalidRequest("response_format.json_schema", "'json_schema.name' is required")
        out: JSONDict = {"type": "json_schema", "name": js["name"], "schema": js.get("schema") or {}}
        for k in ("strict", "description"):
            if js.get(k) is not None:
                out[k] = js[k]
        return out
    raise UnsupportedFeature("response_format.type", f"response_format type {typ!r} is not supported")


def decode_chat_request(body: JSONDict) -> JSONDict:
    for key in body:
        if key in _CHAT_DROPPED:
            log.debug("dropping chat field %s: no equivalent in the canonical form", key)
        elif key not in _CHAT_HANDLED:
            raise UnsupportedFeature(key, "unknown field cannot be translated")
    n = body.get("n")
    if n is not None and n != 1:
        raise UnsupportedFeature("n", "only one choice (n=1) can be produced")
    if body.get("logprobs"):
        raise UnsupportedFeature("logprobs", "log-probabilities cannot be produced on a translated path")
    for key in ("top_logprobs", "logit_bias", "audio", "web_search_options", "functions", "function_call"):
        reject_if(body, key, "not supported on a translated path")
    mods = body.get("modalities")
    if isinstance(mods, list) and any(m != "text" for m in mods):
        raise UnsupportedFeature("modalities", "only text output is supported")

    instructions, items = _decode_messages(body["messages"])
    out: JSONDict = {"model": body["model"]}
    if instructions:
        out["instructions"] = "\n\n".join(instructions)
    out["input"] = items
    _decode_options(body, out)
    return out


def _decode_messages(messages: list[Any]) -> tuple[list[str], list[JSONDict]]:
    """Chat messages -> (leading system texts, canonical input items)."""
    instructions: list[str] = []
    items: list[JSONDict] = []
    leading = True
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = m["role"]
        if role in ("system", "developer"):
            text = _text_only(m.get("content"), f"{where}.content")
            if leading:
                instructions.append(text)
            else:
                items.append(
                    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": text}]}
                )
            continue
        leading = False
        if role == "user":
            c = m.get("content")
            parts = (
                [{"type": "input_text", "text": c}]
                if isinstance(c, str)
                else [_user_part(p, f"{where}.content[{j}]") for j, p in enumerate(c)]
            )
            items.append({"type": "message", "role": "user", "content": parts})
        elif role == "assistant":
            parts = _assistant_parts(m.get("content"), f"{where}.content")
            if m.get("refusal"):
                parts.append({"type": "refusal", "refusal": m["refusal"]})
            if parts:
                items.append({"type": "message", "role": "assistant", "content": parts})
            calls = m.get("tool_calls") or []
            items.extend(_decode_tool_call(tc, f"{where}.tool_calls[{j}]") for j, tc in enumerate(calls))
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m["tool_call_id"],
                    "output": _text_only(m.get("content"), f"{where}.content"),
                }
            )
        else:  # legacy "function" role
            raise UnsupportedFeature(f"{where}.role", "legacy function messages are not supported")
    # A custom tool's output arrives as a role:"tool" message too; re-type it to match.
    custom_ids = {it["call_id"] for it in items if it["type"] == "custom_tool_call"}
    for it in items:
        if it["type"] == "function_call_output" and it["call_id"] in custom_ids:
            it["type"] = "custom_tool_call_output"
    check_call_pairing(items, "messages")
    return instructions, items


def _decode_tool_call(tc: JSONDict, where: str) -> JSONDict:
    if tc.get("type", "function") == "custom":
        return {
            "type": "custom_tool_call",
            "call_id": tc["id"],
            "name": tc["custom"]["name"],
            "input": tc["custom"].get("input", ""),
        }
    if tc.get("type", "function") == "function":
        return {
            "type": "function_call",
            "call_id": tc["id"],
            "name": tc["function"]["name"],
            "arguments": tc["function"].get("arguments") or "",
        }
    raise UnsupportedFeature(f"{where}.type", "unknown tool call type")


def _decode_options(body: JSONDict, out: JSONDict) -> None:
    """Everything but the messages: sampling, limits, tools, reasoning, output format, stops."""
    for key in _CHAT_SAME:
        if body.get(key) is not None:
            out[key] = body[key]
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if cap is not None:
        out["max_output_tokens"] = cap
    if body.get("tools"):
        out["tools"] = _decode_tools(body["tools"])
        if body.get("tool_choice") is not None:
            out["tool_choice"] = _decode_tool_choice(body["tool_choice"])
    else:
        out.pop("parallel_tool_calls", None)
    if body.get("reasoning_effort") is not None:
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    text_cfg: JSONDict = {}
    if body.get("response_format") is not None:
        text_cfg["format"] = _decode_response_format(body["response_format"])
    if body.get("verbosity") is not None:
        text_cfg["verbosity"] = body["verbosity"]
    if text_cfg:
        out["text"] = text_cfg
    stop = body.get("stop")
    if stop:
        out["stop"] = [stop] if isinstance(stop, str) else list(stop)


# ---------------------------------------------------------------- encode: canonical -> chat


def _encode_user_part(p: JSONDict, where: str) -> JSONDict:
    typ = p.get("type")
    if typ in ("input_text", "text", "output_text"):
        return {"type": "text", "text": p.get("text", "")}
    if typ == "input_image":
        url = p.get("image_url")
        if not isinstance(url, str):
            raise UnsupportedFeature(f"{where}.file_id", "Chat images need an image URL (file ids are not supported)")
        iu: JSONDict = {"url": url}
        if p.get("detail") and p["detail"] != "auto":
            iu["detail"] = p["detail"]
        return {"type": "image_url", "image_url": iu}
    if typ == "input_file":
        if p.get("file_url"):
            raise UnsupportedFeature(f"{where}.file_url", "Chat file parts cannot reference a URL")
        f = {k: p[k] for k in ("file_data", "file_id", "filename") if p.get(k) is not None}
        return {"type": "file", "file": f}
    raise UnsupportedFeature(where, f"content part type {typ!r} cannot be sent to a Chat upstream")


def _encode_tools(tools: list[JSONDict], opts: EncodeOptions) -> list[JSONDict]:
    out: list[JSONDict] = []
    for i, t in expand_namespaces(tools):
        typ = t.get("type")
        if typ == "function":
            fn: JSONDict = {"name": t.get("name")}
            if t.get("description") is not None:
                fn["description"] = t["description"]
            if t.get("parameters") is not None:
                fn["parameters"] = t["parameters"]
            if t.get("strict") is not None:
                fn["strict"] = t["strict"]
            out.append({"type": "function", "function": fn})
        elif typ == "custom":
            fn = {"name": t.get("name"), "parameters": custom_tool_parameters(t)}
            if t.get("description") is not None:
                fn["description"] = t["description"]
            out.append({"type": "function", "function": fn})
        else:
            raise UnsupportedFeature(f"tools[{i}].type", f"tool type {typ!r} cannot run on this upstream")
    return out


def _encode_tool_choice(tc: Any, opts: EncodeOptions) -> Any:
    if isinstance(tc, str):
        return tc
    typ = tc.get("type") if isinstance(tc, dict) else None
    if typ in ("function", "custom"):
        return {"type": "function", "function": {"name": tc.get("name")}}
    if typ == "allowed_tools":
        tools = [{"type": "function", "function": {"name": t.get("name")}} for t in tc.get("tools") or []]
        return {"type": "allowed_tools", "allowed_tools": {"mode": tc.get("mode", "auto"), "tools": tools}}
    raise UnsupportedFeature("tool_choice", f"tool_choice {typ!r} cannot be expressed for this upstream")


def _encode_format(fmt: Any) -> JSONDict:
    if not isinstance(fmt, dict):
        raise InvalidRequest("text.format", "'text.format' must be an object")
    typ = fmt.get("type")
    if typ in ("text", "json_object"):
        return {"type": typ}
    if typ == "json_schema":
        js: JSONDict = {"name": fmt.get("name", "output"), "schema": fmt.get("schema") or {}}
        for k in ("strict", "description"):
            if fmt.get(k) is not None:
                js[k] = fmt[k]
        return {"type": "json_schema", "json_schema": js}
    raise UnsupportedFeature("text.format.type", f"format {typ!r} is not supported")


# Canonical fields this encoder understands; anything else is rejected, not lost.
_RESP_DROP_FOR_CHAT = frozenset(
    {"include", "store", "client_metadata", "prompt_cache_retention", "truncation", "stream_options", "generate"}
)
_RESP_KNOWN = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "stop",
        "max_tool_calls",
        "top_logprobs",
        "background",
        "prompt",
        "previous_response_id",
        "conversation",
        *_RESP_DROP_FOR_CHAT,
    }
)
# Every top-level field of a Responses request the proxy knows (the API reference's list plus
# Codex CLI's `client_metadata`); anything else is refused before dispatch (validate.py).
RESPONSES_FIELDS = _RESP_KNOWN


def reject_unencodable(c: JSONDict) -> None:
    for key in c:
        if key not in _RESP_KNOWN:
            raise UnsupportedFeature(key, "unknown field cannot be translated")
    for key, why in (
        ("previous_response_id", "must be resolved to a full transcript before translation"),
        ("conversation", "conversations are not supported on a translated path"),
        ("prompt", "stored prompts are not supported on a translated path"),
        ("background", "background responses are not supported on a translated path"),
        ("max_tool_calls", "the upstream cannot cap tool calls"),
        ("top_logprobs", "log-probabilities cannot be produced on a translated path"),
    ):
        reject_if(c, key, why)
    inc = c.get("include") or []
    if any(isinstance(x, str) and "logprobs" in x for x in inc):
        raise UnsupportedFeature("include", "log-probabilities cannot be produced on a translated path")


def encode_chat_request(c: JSONDict, opts: EncodeOptions) -> JSONDict:
    reject_unencodable(c)
    items = input_items(c)
    check_call_pairing(items)
    body: JSONDict = {"model": c["model"], "messages": _encode_messages(c, items, opts)}
    _encode_options(c, opts, body)
    return body


def _encode_messages(c: JSONDict, items: list[JSONDict], opts: EncodeOptions) -> list[JSONDict]:
    """Canonical instructions and items -> Chat messages (tool calls merged into assistant turns)."""
    messages: list[JSONDict] = []
    if c.get("instructions"):
        messages.append({"role": "system", "content": c["instructions"]})
    pending: JSONDict | None = None  # assistant message that tool calls merge into

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            messages.append(pending)
            pending = None

    for i, item in enumerate(items):
        where = f"input[{i}]"
        typ = item.get("type")
        if typ == "message":
            role = item.get("role")
            parts = [p for p in content_parts(item.get("content"), str(role)) if isinstance(p, dict)]
            if role == "assistant":
                flush()
                texts, refusals = [], []
                for j, p in enumerate(parts):
                    if p.get("type") in ("output_text", "input_text", "text"):
                        texts.append(p.get("text", ""))
                    elif p.get("type") == "refusal":
                        refusals.append(p.get("refusal", ""))
                    else:
                        raise UnsupportedFeature(f"{where}.content[{j}]", "assistant part cannot be sent to Chat")
                pending = {"role": "assistant", "content": "".join(texts) if texts else None}
                if refusals:
                    pending["refusal"] = "".join(refusals)
                continue
            flush()
            if role in ("system", "developer"):
                messages.append({"role": opts.chat_developer_role, "content": joined_text(parts, f"{where}.content")})
            else:
                enc = [_encode_user_part(p, f"{where}.content[{j}]") for j, p in enumerate(parts)]
                if len(enc) == 1 and enc[0]["type"] == "text":
                    messages.append({"role": "user", "content": enc[0]["text"]})
                else:
                    messages.append({"role": "user", "content": enc})
        elif typ in ("function_call", "custom_tool_call"):
            if pending is None:
                pending = {"role": "assistant", "content": None}
            args = item.get("arguments", "") if typ == "function_call" else dumps_str({"input": item.get("input", "")})
            pending.setdefault("tool_calls", []).append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": call_name_for_upstream(item), "arguments": args},
                }
            )
        elif typ in ("function_call_output", "custom_tool_call_output"):
            flush()
            out = item.get("output")
            if isinstance(out, list):
                for j, p in enumerate(out):
                    if isinstance(p, dict) and p.get("type") not in ("input_text", "output_text", "text"):
                        raise UnsupportedFeature(f"{where}.output[{j}]", "Chat tool messages are text-only")
                out = joined_text(out, f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": out or ""})
        elif typ == "reasoning":
            # No Chat field; encrypted content is upstream-specific (docs/protocols/translation.md#responses-to-chat).
            continue
        else:
            raise UnsupportedFeature(f"{where}.type", f"input item {typ!r} cannot be sent to a Chat upstream")
    flush()
    if not messages:
        raise InvalidRequest("input", "the request has no messages")
    return messages


def _encode_options(c: JSONDict, opts: EncodeOptions, body: JSONDict) -> None:
    for key in ("temperature", "top_p", "user", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"):
        if c.get(key) is not None:
            body[key] = c[key]
    if c.get("max_output_tokens") is not None:
        body[opts.chat_max_tokens_field] = c["max_output_tokens"]
    if c.get("tools"):
        tools = _encode_tools(c["tools"], opts)
        if tools:
            body["tools"] = tools
            if c.get("tool_choice") is not None:
                body["tool_choice"] = _encode_tool_choice(c["tool_choice"], opts)
            if c.get("parallel_tool_calls") is not None:
                body["parallel_tool_calls"] = c["parallel_tool_calls"]
    reasoning = c.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        body["reasoning_effort"] = reasoning["effort"]
    text_cfg = c.get("text")
    if isinstance(text_cfg, dict):
        if text_cfg.get("format") is not None:
            body["response_format"] = _encode_format(text_cfg["format"])
        if text_cfg.get("verbosity") is not None:
            body["verbosity"] = text_cfg["verbosity"]
    if c.get("stop"):
        body["stop"] = c["stop"]
    if c.get("stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}


def parse_arguments(arguments: Any, where: str) -> Any:
    """JSON arguments text -> object; empty means no arguments."""
    if arguments in (None, ""):
        return {}
    try:
        return orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise UnsupportedFeature(where, "tool call arguments are not valid JSON") from None
