"""Canonical Responses events -> client stream events in the target dialect.

Encoders are tolerant of what real Responses upstreams do (docs/protocols/responses.md#ordering-rules "tolerated"):
items that
only appear as ``output_item.done``, ``.done`` events without deltas, missing
``content_part`` events. They keep O(items) state, never the text itself.
"""

from __future__ import annotations

import time
from typing import Any

from ._common import RS_ANTHROPIC_REDACTED
from ._core import Dialect, JSONDict, as_dict, dumps, dumps_str
from .bodies import anthropic_stop_reason, chat_finish_reason, has_refusal, has_tool_call, reasoning_signature
from .errors import anthropic_type, openai_type
from .ids import derive_id, new_id
from .sse import SseEvent
from .usage import Usage, usage_from, usage_to

DONE = SseEvent(None, b"[DONE]")


def _json_str_body(text: str) -> str:
    """``text`` escaped as the inside of a JSON string (to stream ``{"input":"..."}``)."""
    return dumps_str(text)[1:-1]


class ChatEncoder:
    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.started = False
        self.done = False
        self.id = ""
        self.created = 0
        self.tools: dict[int, int] = {}  # output_index -> chat tool_calls index
        self.custom: set[int] = set()
        self.args_seen: set[int] = set()
        self.text_seen: set[tuple[int, int]] = set()
        self.item_text: set[int] = set()
        self.any_tool = False
        self.refusal = False

    def _chunk(self, delta: JSONDict, finish: str | None = None) -> SseEvent:
        return SseEvent(
            None,
            dumps(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
            ),
        )

    def _start(self, resp: JSONDict | None) -> list[SseEvent]:
        if self.started:
            return []
        self.started = True
        r = resp or {}
        self.id = derive_id("chatcmpl-", r.get("id"))
        created = r.get("created_at")
        self.created = created if isinstance(created, int) else int(time.time())
        return [self._chunk({"role": "assistant", "content": ""})]

    def _tool(self, oi: int, payload: JSONDict) -> SseEvent:
        return self._chunk({"tool_calls": [{"index": self.tools[oi], **payload}]})

    def _new_tool(self, oi: int, item: JSONDict, arguments: str) -> SseEvent:
        self.tools[oi] = len(self.tools)
        self.any_tool = True
        return self._tool(
            oi,
            {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": arguments},
            },
        )

    def feed(self, e: JSONDict) -> list[SseEvent]:
        if self.done:
            return []
        typ = e.get("type")
        out = self._start(as_dict(e.get("response")) if typ in ("response.created", "response.in_progress") else None)
        oi = e.get("output_index")
        oi = oi if isinstance(oi, int) else -1
        if typ == "response.output_item.added":
            item = as_dict(e.get("item"))
            if item.get("type") == "function_call":
                out.append(self._new_tool(oi, item, ""))
            elif item.get("type") == "custom_tool_call":
                self.custom.add(oi)
                out.append(self._new_tool(oi, item, '{"input":"'))
        elif typ == "response.output_text.delta" or typ == "response.refusal.delta":
            key = "content" if typ == "response.output_text.delta" else "refusal"
            self.text_seen.add((oi, as_int(e.get("content_index"))))
            self.item_text.add(oi)
            self.refusal |= key == "refusal"
            if e.get("delta"):
                out.append(self._chunk({key: e["delta"]}))
        elif typ == "response.output_text.done" or typ == "response.refusal.done":
            key, field = ("content", "text") if typ == "response.output_text.done" else ("refusal", "refusal")
            ci = (oi, as_int(e.get("content_index")))
            if ci not in self.text_seen and e.get(field):
                self.text_seen.add(ci)
                self.item_text.add(oi)
                out.append(self._chunk({key: e[field]}))
        elif typ in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            if e.get("delta"):
                # Non-standard but widely understood (CLIProxyAPI); clients ignore unknown keys.
                out.append(self._chunk({"reasoning_content": e["delta"]}))
        elif typ == "response.function_call_arguments.delta" and oi in self.tools:
            self.args_seen.add(oi)
            if e.get("delta"):
                out.append(self._tool(oi, {"function": {"arguments": e["delta"]}}))
        elif typ == "response.function_call_arguments.done" and oi in self.tools:
            if oi not in self.args_seen and e.get("arguments"):
                self.args_seen.add(oi)
                out.append(self._tool(oi, {"function": {"arguments": e["arguments"]}}))
        elif typ == "response.custom_tool_call_input.delta" and oi in self.tools:
            self.args_seen.add(oi)
            if e.get("delta"):
                out.append(self._tool(oi, {"function": {"arguments": _json_str_body(str(e["delta"]))}}))
        elif typ == "response.output_item.done":
            out += self._item_done(oi, as_dict(e.get("item")))
        elif typ in ("response.completed", "response.incomplete"):
            out += self._terminal(as_dict(e.get("response")))
        elif typ in ("response.failed", "error"):
            err = as_dict(as_dict(e.get("response")).get("error")) if typ == "response.failed" else e
            out += self.error_events(
                message=str(err.get("message") or "upstream error"),
                type=str(err.get("type") or err.get("code") or "server_error"),
                code=str(err["code"]) if err.get("code") else None,
            )
        return out

    def _item_done(self, oi: int, item: JSONDict) -> list[SseEvent]:
        typ = item.get("type")
        out: list[SseEvent] = []
        if typ == "function_call":
            args = str(item.get("arguments") or "")
            if oi not in self.tools:
                out.append(self._new_tool(oi, item, args))
            elif oi not in self.args_seen and args:
                out.append(self._tool(oi, {"function": {"arguments": args}}))
            self.args_seen.add(oi)
        elif typ == "custom_tool_call":
            text = str(item.get("input") or "")
            if oi not in self.tools:
                out.append(self._new_tool(oi, item, dumps_str({"input": text})))
            else:
                tail = ("" if oi in self.args_seen else _json_str_body(text)) + '"}'
                out.append(self._tool(oi, {"function": {"arguments": tail}}))
            self.args_seen.add(oi)
        elif typ == "message" and oi not in self.item_text:
            # An upstream that only sent output_item.done (tolerated by docs/protocols/responses.md#ordering-rules).
            self.item_text.add(oi)
            for p in item.get("content") or []:
                if p.get("type") == "output_text" and p.get("text"):
                    out.append(self._chunk({"content": p["text"]}))
                elif p.get("type") == "refusal" and p.get("refusal"):
                    self.refusal = True
                    out.append(self._chunk({"refusal": p["refusal"]}))
        return out

    def _terminal(self, resp: JSONDict) -> list[SseEvent]:
        self.done = True
        tool = self.any_tool or has_tool_call(resp.get("output") or [])
        finish = chat_finish_reason(resp.get("status"), as_dict(resp.get("incomplete_details")).get("reason"), tool)
        out = [self._chunk({}, finish)]
        if self.include_usage and isinstance(resp.get("usage"), dict):
            u = usage_from(Dialect.RESPONSES, resp["usage"])
            out.append(
                SseEvent(
                    None,
                    dumps(
                        {
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": usage_to(Dialect.CHAT, u),
                        }
                    ),
                )
            )
        out.append(DONE)
        return out

    def finish(self) -> list[SseEvent]:
        if self.done or not self.started:
            return []
        return self._terminal({"status": "completed"})

    def error_events(self, *, message: str, type: str, code: str | None) -> list[SseEvent]:
        self.done = True
        return [
            SseEvent(
                None,
                dumps({"error": {"message": message, "type": openai_type(type, 500), "param": None, "code": code}}),
            )
        ]


def as_int(v: Any) -> int:
    return v if isinstance(v, int) else 0


class _Block:
    __slots__ = ("index", "kind", "oi", "seen")

    def __init__(self, index: int, kind: str, oi: int) -> None:
        self.index = index
        self.kind = kind
        self.oi = oi
        self.seen = False


class MessagesEncoder:
    def __init__(self, model: str, input_tokens: int) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.started = False
        self.done = False
        self.next_index = 0
        self.open: _Block | None = None
        self.item_blocks: dict[int, int] = {}  # output_index -> blocks emitted for it
        self.args_seen: set[int] = set()
        self.custom: set[int] = set()
        self.text_seen: set[tuple[int, int]] = set()
        self.any_tool = False
        self.refusal = False

    @staticmethod
    def _ev(name: str, data: JSONDict) -> SseEvent:
        return SseEvent(name, dumps({"type": name, **data}))

    def _start(self, resp: JSONDict | None) -> list[SseEvent]:
        if self.started:
            return []
        self.started = True
        r = resp or {}
        u = (
            usage_from(Dialect.RESPONSES, r["usage"])
            if isinstance(r.get("usage"), dict)
            else Usage(input_tokens=self.input_tokens)
        )
        usage = usage_to(Dialect.MESSAGES, u)
        usage["output_tokens"] = max(usage["output_tokens"], 1)
        msg: JSONDict = {
            "id": derive_id("msg_", r.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [self._ev("message_start", {"message": msg})]

    def _open(self, kind: str, oi: int, block: JSONDict) -> list[SseEvent]:
        out = self._close()
        self.open = _Block(self.next_index, kind, oi)
        self.next_index += 1
        self.item_blocks[oi] = self.item_blocks.get(oi, 0) + 1
        out.append(self._ev("content_block_start", {"index": self.open.index, "content_block": block}))
        return out

    def _close(self) -> list[SseEvent]:
        if self.open is None:
            return []
        idx = self.open.index
        self.open = None
        return [self._ev("content_block_stop", {"index": idx})]

    def _delta(self, delta: JSONDict) -> SseEvent:
        assert self.open is not None
        self.open.seen = True
        return self._ev("content_block_delta", {"index": self.open.index, "delta": delta})

    def _is_open(self, kind: str, oi: int) -> bool:
        return self.open is not None and self.open.kind == kind and self.open.oi == oi

    def _text(self, oi: int, text: str) -> list[SseEvent]:
        out = [] if self._is_open("text", oi) else self._open("text", oi, {"type": "text", "text": ""})
        if text:
            out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def _thinking(self, oi: int, text: str) -> list[SseEvent]:
        out = (
            []
            if self._is_open("thinking", oi)
            else self._open("thinking", oi, {"type": "thinking", "thinking": "", "signature": ""})
        )
        if text:
            out.append(self._delta({"type": "thinking_delta", "thinking": text}))
        return out

    def _tool_start(self, oi: int, item: JSONDict) -> list[SseEvent]:
        self.any_tool = True
        return self._open(
            "tool", oi, {"type": "tool_use", "id": item.get("call_id"), "name": item.get("name"), "input": {}}
        )

    def _json(self, text: str) -> SseEvent:
        return self._delta({"type": "input_json_delta", "partial_json": text})

    def feed(self, e: JSONDict) -> list[SseEvent]:
        if self.done:
            return []
        typ = e.get("type")
        out = self._start(as_dict(e.get("response")) if typ in ("response.created", "response.in_progress") else None)
        oi = e.get("output_index")
        oi = oi if isinstance(oi, int) else -1
        if typ == "response.output_item.added":
            item = as_dict(e.get("item"))
            if item.get("type") == "function_call":
                out += self._tool_start(oi, item)
            elif item.get("type") == "custom_tool_call":
                self.custom.add(oi)
                out += self._tool_start(oi, item)
                out.append(self._json('{"input":"'))
        elif typ == "response.content_part.added":
            if as_dict(e.get("part")).get("type") in ("output_text", "refusal"):
                out += self._text(oi, "")
        elif typ in ("response.output_text.delta", "response.refusal.delta"):
            self.text_seen.add((oi, as_int(e.get("content_index"))))
            self.refusal |= typ == "response.refusal.delta"
            out += self._text(oi, str(e.get("delta") or ""))
        elif typ in ("response.output_text.done", "response.refusal.done"):
            ci = (oi, as_int(e.get("content_index")))
            field = "text" if typ == "response.output_text.done" else "refusal"
            if ci not in self.text_seen and e.get(field):
                self.text_seen.add(ci)
                out += self._text(oi, str(e[field]))
        elif typ == "response.content_part.done":
            if self._is_open("text", oi):
                out += self._close()
        elif typ == "response.reasoning_summary_part.added":
            if self._is_open("thinking", oi) and self.open is not None and self.open.seen:
                out.append(self._delta({"type": "thinking_delta", "thinking": "\n\n"}))
        elif typ in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            out += self._thinking(oi, str(e.get("delta") or ""))
        elif typ == "response.function_call_arguments.delta" and self._is_open("tool", oi):
            self.args_seen.add(oi)
            if e.get("delta"):
                out.append(self._json(str(e["delta"])))
        elif typ == "response.custom_tool_call_input.delta" and self._is_open("tool", oi):
            self.args_seen.add(oi)
            if e.get("delta"):
                out.append(self._json(_json_str_body(str(e["delta"]))))
        elif typ == "response.output_item.done":
            out += self._item_done(oi, as_dict(e.get("item")))
        elif typ in ("response.completed", "response.incomplete"):
            out += self._terminal(as_dict(e.get("response")))
        elif typ in ("response.failed", "error"):
            err = as_dict(as_dict(e.get("response")).get("error")) if typ == "response.failed" else e
            out += self.error_events(
                message=str(err.get("message") or "upstream error"),
                type=str(err.get("type") or err.get("code") or "api_error"),
                code=None,
            )
        return out

    def _item_done(self, oi: int, item: JSONDict) -> list[SseEvent]:
        typ = item.get("type")
        out: list[SseEvent] = []
        if typ == "message":
            if oi not in self.item_blocks:
                for p in item.get("content") or []:
                    if p.get("type") == "output_text" and p.get("text"):
                        out += self._text(oi, str(p["text"])) + self._close()
                    elif p.get("type") == "refusal" and p.get("refusal"):
                        self.refusal = True
                        out += self._text(oi, str(p["refusal"])) + self._close()
            elif self._is_open("text", oi):
                out += self._close()
        elif typ in ("function_call", "custom_tool_call") and oi in self.item_blocks and not self._is_open("tool", oi):
            pass  # its block was already closed (an interleaving upstream); never emit it twice
        elif typ == "function_call":
            args = str(item.get("arguments") or "")
            if not self._is_open("tool", oi):
                out += self._tool_start(oi, item)
                self.args_seen.discard(oi)
            if oi not in self.args_seen and args:
                out.append(self._json(args))
            out += self._close()
        elif typ == "custom_tool_call":
            text = str(item.get("input") or "")
            if not self._is_open("tool", oi):
                out += self._tool_start(oi, item)
                out.append(self._json(dumps_str({"input": text})))
            else:
                out.append(self._json(("" if oi in self.args_seen else _json_str_body(text)) + '"}'))
            out += self._close()
        elif typ == "reasoning":
            out += self._reasoning_done(oi, item)
        return out

    def _reasoning_done(self, oi: int, item: JSONDict) -> list[SseEvent]:
        enc = item.get("encrypted_content")
        if str(item.get("id") or "").startswith(RS_ANTHROPIC_REDACTED):
            return self._open("redacted", oi, {"type": "redacted_thinking", "data": enc or ""}) + self._close()
        out: list[SseEvent] = []
        if not self._is_open("thinking", oi):
            text = "\n\n".join(str(s.get("text") or "") for s in item.get("summary") or [] if isinstance(s, dict))
            if oi in self.item_blocks or not (text or enc):
                return self._close() if self._is_open("thinking", oi) else []
            out += self._thinking(oi, text)
        # docs/protocols/translation.md#streams: the signature carries "<encrypted_content>@<reasoning_id>" for replay.
        out.append(self._delta({"type": "signature_delta", "signature": reasoning_signature(item)}))
        return out + self._close()

    def _terminal(self, resp: JSONDict) -> list[SseEvent]:
        out = self._close()
        self.done = True
        output = resp.get("output") or []
        stop = anthropic_stop_reason(
            resp.get("status"),
            as_dict(resp.get("incomplete_details")).get("reason"),
            self.any_tool or has_tool_call(output),
            self.refusal or has_refusal(output),
        )
        u = (
            usage_from(Dialect.RESPONSES, resp["usage"])
            if isinstance(resp.get("usage"), dict)
            else Usage(input_tokens=self.input_tokens)
        )
        out.append(
            self._ev(
                "message_delta",
                {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage_to(Dialect.MESSAGES, u)},
            )
        )
        out.append(self._ev("message_stop", {}))
        return out

    def finish(self) -> list[SseEvent]:
        if self.done or not self.started:
            return []
        return self._terminal({"status": "completed"})

    def error_events(self, *, message: str, type: str, code: str | None) -> list[SseEvent]:
        self.done = True
        return [self._ev("error", {"error": {"type": anthropic_type(type, 500), "message": message}})]


class ResponsesEncoder:
    """Canonical events are Responses events: number them and frame them."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.seq = 0
        self.resp_id: str | None = None
        self.created = 0
        self.done = False

    def _ev(self, e: JSONDict) -> SseEvent:
        e = {**e, "sequence_number": self.seq}
        self.seq += 1
        return SseEvent(str(e["type"]), dumps(e))

    def feed(self, e: JSONDict) -> list[SseEvent]:
        if self.done:
            return []
        resp = e.get("response")
        if isinstance(resp, dict):
            resp = {**resp, "model": self.model}
            e = {**e, "response": resp}
            if self.resp_id is None:
                self.resp_id = str(resp.get("id"))
                self.created = as_int(resp.get("created_at"))
        if e.get("type") in ("response.completed", "response.incomplete", "response.failed", "error"):
            self.done = True
        return [self._ev(e)]

    def finish(self) -> list[SseEvent]:
        return []

    def error_events(self, *, message: str, type: str, code: str | None) -> list[SseEvent]:
        self.done = True
        if self.resp_id is None:
            return [self._ev({"type": "error", "code": code or type, "message": message, "param": None})]
        from .bodies import response_object

        resp = response_object(
            resp_id=self.resp_id,
            created_at=self.created or int(time.time()),
            model=self.model,
            status="failed",
            output=[],
            usage=None,
            error={"code": code or type, "message": message},
        )
        return [self._ev({"type": "response.failed", "response": resp})]


def random_response_id() -> str:
    return new_id("resp_")
