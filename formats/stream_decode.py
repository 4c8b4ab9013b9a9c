"""Upstream stream -> canonical Responses events (dicts without ``sequence_number``).

Decoders for Chat and Messages sources emit the *full* canonical sequence
(docs/protocols/responses.md#ordering-rules): created,
in_progress, added before any delta, a done for every added, and a terminal event whose
``response.output`` lists every item. They keep only the current output (needed for the
terminal event), never the event history.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from ._common import RS_ANTHROPIC, RS_ANTHROPIC_REDACTED, custom_input_from_arguments, namespaced_call
from ._core import Dialect, JSONDict, as_dict, dumps_str, loads_event
from .bodies import response_object, text_part
from .ids import derive_id, strip_prefix
from .sse import SseEvent
from .usage import Usage, usage_from, usage_to

TERMINAL_TYPES = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _Item:
    """One output item being built: its snapshot plus streaming bookkeeping."""

    __slots__ = ("args", "custom", "done", "index", "item", "part_open", "parts", "summary")

    def __init__(self, index: int, item: JSONDict, *, custom: bool = False) -> None:
        self.index = index
        self.item = item
        self.custom = custom
        self.done = False
        self.args: list[str] = []  # arguments / custom input / signature fragments
        self.parts: list[tuple[str, list[str]]] = []  # message parts: (type, text pieces)
        self.part_open = False
        self.summary: list[str] = []  # reasoning summary text pieces


class CanonicalBuilder:
    """Emits canonical events for a response assembled piece by piece."""

    def __init__(self, custom_tools: Collection[str]) -> None:
        self.custom_tools = custom_tools
        self.started = False
        self.terminal = False
        self.resp_id = ""
        self.base = ""
        self.created = 0
        self.model = ""
        self.items: list[_Item] = []
        self.usage: Usage | None = None

    # -- lifecycle
    def start(self, source_id: Any, created: Any, model: Any) -> list[JSONDict]:
        self.started = True
        self.resp_id = derive_id("resp_", source_id)
        self.base = strip_prefix(self.resp_id)
        self.created = created if isinstance(created, int) else int(time.time())
        self.model = str(model or "")
        resp = self._response("in_progress", [], None)
        return [
            {"type": "response.created", "response": resp},
            {"type": "response.in_progress", "response": dict(resp)},
        ]

    def _response(
        self, status: str, output: list[JSONDict], reason: str | None, error: JSONDict | None = None
    ) -> JSONDict:
        usage = usage_to(Dialect.RESPONSES, self.usage) if self.usage is not None and status != "in_progress" else None
        return response_object(
            resp_id=self.resp_id,
            created_at=self.created,
            model=self.model,
            status=status,
            output=output,
            usage=usage,
            incomplete_reason=reason,
            error=error,
        )

    def finish(self, status: str = "completed", reason: str | None = None) -> list[JSONDict]:
        if self.terminal or not self.started:
            return []
        out = self.close_all()
        self.terminal = True
        typ = "response.completed" if status == "completed" else "response.incomplete"
        out.append({"type": typ, "response": self._response(status, [i.item for i in self.items], reason)})
        return out

    def fail(self, code: str, message: str) -> list[JSONDict]:
        if self.terminal:
            return []
        out: list[JSONDict] = []
        if not self.started:
            out += self.start(None, None, self.model)
        self.terminal = True
        out.append(
            {
                "type": "response.failed",
                "response": self._response(
                    "failed", [i.item for i in self.items if i.done], None, {"code": code, "message": message}
                ),
            }
        )
        return out

    # -- items
    def _add(self, prefix: str, item: JSONDict, *, custom: bool = False) -> tuple[_Item, JSONDict]:
        idx = len(self.items)
        item["id"] = f"{prefix}{self.base}_{idx}"
        it = _Item(idx, item, custom=custom)
        self.items.append(it)
        return it, {"type": "response.output_item.added", "output_index": idx, "item": dict(item)}

    def add_message(self) -> tuple[_Item, list[JSONDict]]:
        it, ev = self._add("msg_", {"type": "message", "status": "in_progress", "role": "assistant", "content": []})
        return it, [ev]

    def add_reasoning(self, prefix: str = "rs_", encrypted: str | None = None) -> tuple[_Item, list[JSONDict]]:
        item: JSONDict = {"type": "reasoning", "summary": []}
        if encrypted is not None:
            item["encrypted_content"] = encrypted
        it, ev = self._add(prefix, item)
        return it, [ev]

    def add_call(self, call_id: str, name: str) -> tuple[_Item, list[JSONDict]]:
        if name in self.custom_tools:
            it, ev = self._add(
                "ctc_",
                {"type": "custom_tool_call", "status": "in_progress", "call_id": call_id, "name": name, "input": ""},
                custom=True,
            )
        else:
            item: JSONDict = {"type": "function_call", "status": "in_progress", "call_id": call_id, "name": name}
            ns = namespaced_call(self.custom_tools, name)
            if ns is not None:
                item["namespace"], item["name"] = ns
            it, ev = self._add("fc_", {**item, "arguments": ""})
        return it, [ev]

    def text_delta(self, it: _Item, kind: str, delta: str) -> list[JSONDict]:
        """kind: "output_text" or "refusal"; opens a new content part when the kind changes."""
        out: list[JSONDict] = []
        if it.part_open and it.parts[-1][0] != kind:
            out += self._close_part(it)
        if not it.part_open:
            it.parts.append((kind, []))
            it.part_open = True
            part = (
                {"type": "output_text", "text": "", "annotations": []}
                if kind == "output_text"
                else {"type": "refusal", "refusal": ""}
            )
            out.append(
                {
                    "type": "response.content_part.added",
                    "item_id": it.item["id"],
                    "output_index": it.index,
                    "content_index": len(it.parts) - 1,
                    "part": part,
                }
            )
        it.parts[-1][1].append(delta)
        ci = len(it.parts) - 1
        if kind == "output_text":
            out.append(
                {
                    "type": "response.output_text.delta",
                    "item_id": it.item["id"],
                    "output_index": it.index,
                    "content_index": ci,
                    "delta": delta,
                    "logprobs": [],
                }
            )
        else:
            out.append(
                {
                    "type": "response.refusal.delta",
                    "item_id": it.item["id"],
                    "output_index": it.index,
                    "content_index": ci,
                    "delta": delta,
                }
            )
        return out

    def _close_part(self, it: _Item) -> list[JSONDict]:
        it.part_open = False
        kind, pieces = it.parts[-1]
        text = "".join(pieces)
        ci = len(it.parts) - 1
        base = {"item_id": it.item["id"], "output_index": it.index, "content_index": ci}
        if kind == "output_text":
            part = text_part(text)
            done = {"type": "response.output_text.done", **base, "text": text, "logprobs": []}
        else:
            part = {"type": "refusal", "refusal": text}
            done = {"type": "response.refusal.done", **base, "refusal": text}
        it.item["content"].append(part)
        return [done, {"type": "response.content_part.done", **base, "part": part}]

    def summary_delta(self, it: _Item, delta: str) -> list[JSONDict]:
        out: list[JSONDict] = []
        base = {"item_id": it.item["id"], "output_index": it.index, "summary_index": 0}
        if not it.part_open:
            it.part_open = True
            out.append(
                {"type": "response.reasoning_summary_part.added", **base, "part": {"type": "summary_text", "text": ""}}
            )
        it.summary.append(delta)
        out.append({"type": "response.reasoning_summary_text.delta", **base, "delta": delta})
        return out

    def args_delta(self, it: _Item, delta: str) -> list[JSONDict]:
        it.args.append(delta)
        if it.custom:
            return []  # JSON-wrapped input cannot be unescaped piecewise; emitted whole at close
        return [
            {
                "type": "response.function_call_arguments.delta",
                "item_id": it.item["id"],
                "output_index": it.index,
                "delta": delta,
            }
        ]

    def close(self, it: _Item, *, default_args: str = "") -> list[JSONDict]:
        if it.done:
            return []
        it.done = True
        out: list[JSONDict] = []
        item = it.item
        base = {"item_id": item["id"], "output_index": it.index}
        typ = item["type"]
        if typ == "message":
            if it.part_open:
                out += self._close_part(it)
        elif typ == "reasoning":
            if it.part_open:
                text = "".join(it.summary)
                part = {"type": "summary_text", "text": text}
                out.append({"type": "response.reasoning_summary_text.done", **base, "summary_index": 0, "text": text})
                out.append({"type": "response.reasoning_summary_part.done", **base, "summary_index": 0, "part": part})
                item["summary"] = [part]
            if it.args:  # signature pieces
                item["encrypted_content"] = "".join(it.args)
        elif typ == "function_call":
            args = "".join(it.args) or default_args
            if not it.args and args:
                out.append({"type": "response.function_call_arguments.delta", **base, "delta": args})
            item["arguments"] = args
            out.append(
                {"type": "response.function_call_arguments.done", **base, "arguments": args, "name": item["name"]}
            )
        elif typ == "custom_tool_call":
            text = custom_input_from_arguments("".join(it.args) or default_args)
            item["input"] = text
            if text:
                out.append({"type": "response.custom_tool_call_input.delta", **base, "delta": text})
            out.append({"type": "response.custom_tool_call_input.done", **base, "input": text})
        if "status" in item or typ != "reasoning":
            item["status"] = "completed"
        out.append({"type": "response.output_item.done", "output_index": it.index, "item": dict(item)})
        return out

    def close_all(self) -> list[JSONDict]:
        out: list[JSONDict] = []
        for it in self.items:
            out += self.close(it)
        return out


class ChatDecoder:
    """Chat completion chunks -> canonical events (docs/protocols/translation.md#streams, last paragraph)."""

    def __init__(self, custom_tools: Collection[str]) -> None:
        self.b = CanonicalBuilder(custom_tools)
        self.cur: _Item | None = None  # open message or reasoning item
        self.calls: dict[int, _Item] = {}
        self.finish_reason: str | None = None

    @property
    def usage(self) -> Usage | None:
        return self.b.usage

    def feed(self, ev: SseEvent) -> list[JSONDict]:
        if ev.data.strip() == b"[DONE]":
            return self.finish()
        if self.b.terminal:
            return []
        data = loads_event(ev.data)
        err = data.get("error")
        if err is not None:
            e = as_dict(err)
            return self.b.fail(
                str(e.get("code") or e.get("type") or "upstream_error"),
                str(e.get("message") or "upstream stream error"),
            )
        out: list[JSONDict] = []
        if not self.b.started:
            out += self.b.start(data.get("id"), data.get("created"), data.get("model"))
        if isinstance(data.get("usage"), dict):
            self.b.usage = usage_from(Dialect.CHAT, data["usage"])
        choices = data.get("choices")
        if not isinstance(choices, list):
            return out
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1 is rejected upstream of here; extra choices are ignored
            delta = as_dict(choice.get("delta"))
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._ensure_cur("reasoning")
                assert self.cur is not None
                out += self.b.summary_delta(self.cur, reasoning)
            for kind, key in (("output_text", "content"), ("refusal", "refusal")):
                piece = delta.get(key)
                if isinstance(piece, str) and piece:
                    out += self._ensure_cur("message")
                    assert self.cur is not None
                    out += self.b.text_delta(self.cur, kind, piece)
            tcs = delta.get("tool_calls")
            if isinstance(tcs, list):
                for pos, tc in enumerate(tcs):
                    out += self._tool_delta(as_dict(tc), pos)
            fr = choice.get("finish_reason")
            if isinstance(fr, str) and fr:
                self.finish_reason = fr
                out += self.b.close_all()
                self.cur = None
        return out

    def _ensure_cur(self, typ: str) -> list[JSONDict]:
        if self.cur is not None and self.cur.item["type"] == typ and not self.cur.done:
            return []
        out = self.b.close(self.cur) if self.cur is not None else []
        it, evs = self.b.add_message() if typ == "message" else self.b.add_reasoning()
        self.cur = it
        return out + evs

    def _tool_delta(self, tc: JSONDict, pos: int) -> list[JSONDict]:
        idx = tc.get("index", pos)
        idx = idx if isinstance(idx, int) else pos
        fn = as_dict(tc.get("function"))
        out: list[JSONDict] = []
        it = self.calls.get(idx)
        if it is None:
            # Items are sequential in Responses (docs/protocols/responses.md#stream-events): a new call closes
            # whatever is open.
            # OpenAI streams parallel calls one after another; a server that interleaves
            # them loses the late fragments of an already-closed call (see docs/formats.md).
            if self.cur is not None:
                out += self.b.close(self.cur)
                self.cur = None
            for prev in self.calls.values():
                out += self.b.close(prev)
            it, evs = self.b.add_call(str(tc.get("id") or ""), str(fn.get("name") or ""))
            self.calls[idx] = it
            out += evs
        args = fn.get("arguments")
        if isinstance(args, str) and args and not it.done:
            out += self.b.args_delta(it, args)
        return out

    def finish(self) -> list[JSONDict]:
        fr = self.finish_reason
        if fr == "length":
            return self.b.finish("incomplete", "max_output_tokens")
        if fr == "content_filter":
            return self.b.finish("incomplete", "content_filter")
        return self.b.finish()


class MessagesDecoder:
    """Anthropic Messages events -> canonical events (docs/protocols/translation.md#streams, reverse direction)."""

    def __init__(self, custom_tools: Collection[str]) -> None:
        self.b = CanonicalBuilder(custom_tools)
        self.blocks: dict[int, _Item | None] = {}
        self.raw_usage: JSONDict = {}
        self.stop_reason: str | None = None

    @property
    def usage(self) -> Usage | None:
        return self.b.usage

    def _merge_usage(self, u: Any) -> None:
        if isinstance(u, dict):
            # message_delta usage is cumulative: later values overwrite (docs/protocols/anthropic-messages.md#stream).
            self.raw_usage.update({k: v for k, v in u.items() if v is not None})
            self.b.usage = usage_from(Dialect.MESSAGES, self.raw_usage)

    def feed(self, ev: SseEvent) -> list[JSONDict]:
        if self.b.terminal:
            return []
        data = loads_event(ev.data)
        typ = data.get("type") or ev.event
        if typ == "message_start":
            msg = as_dict(data.get("message"))
            self._merge_usage(msg.get("usage"))
            return [] if self.b.started else self.b.start(msg.get("id"), None, msg.get("model"))
        if typ == "error":
            e = as_dict(data.get("error"))
            return self.b.fail(str(e.get("type") or "api_error"), str(e.get("message") or "upstream stream error"))
        if typ == "ping":
            return []
        out: list[JSONDict] = []
        if not self.b.started:
            out += self.b.start(None, None, None)
        idx = data.get("index")
        if typ == "content_block_start":
            out += self._start_block(idx, as_dict(data.get("content_block")))
        elif typ == "content_block_delta":
            it = self.blocks.get(idx) if isinstance(idx, int) else None
            if it is not None and not it.done:
                out += self._delta(it, as_dict(data.get("delta")))
        elif typ == "content_block_stop":
            it = self.blocks.get(idx) if isinstance(idx, int) else None
            if it is not None:
                out += self.b.close(it, default_args="{}")
        elif typ == "message_delta":
            self._merge_usage(data.get("usage"))
            sr = as_dict(data.get("delta")).get("stop_reason")
            if isinstance(sr, str):
                self.stop_reason = sr
        elif typ == "message_stop":
            out += self.finish()
        return out

    def _start_block(self, idx: Any, block: JSONDict) -> list[JSONDict]:
        if not isinstance(idx, int):
            return []
        bt = block.get("type")
        out: list[JSONDict] = []
        if bt == "text":
            it, out = self.b.add_message()
            if block.get("text"):
                out += self.b.text_delta(it, "output_text", str(block["text"]))
        elif bt == "tool_use":
            it, out = self.b.add_call(str(block.get("id") or ""), str(block.get("name") or ""))
            inp = block.get("input")
            if isinstance(inp, dict) and inp:
                out += self.b.args_delta(it, dumps_str(inp))
        elif bt == "thinking":
            it, out = self.b.add_reasoning(RS_ANTHROPIC)
            if block.get("thinking"):
                out += self.b.summary_delta(it, str(block["thinking"]))
            if block.get("signature"):
                it.args.append(str(block["signature"]))
        elif bt == "redacted_thinking":
            it, out = self.b.add_reasoning(RS_ANTHROPIC_REDACTED, str(block.get("data") or ""))
        else:
            # Server-tool blocks cannot arise: server tools are never sent on a translated path.
            self.blocks[idx] = None
            return []
        self.blocks[idx] = it
        return out

    def _delta(self, it: _Item, delta: JSONDict) -> list[JSONDict]:
        dt = delta.get("type")
        if dt == "text_delta" and it.item["type"] == "message":
            return self.b.text_delta(it, "output_text", str(delta.get("text") or ""))
        if dt == "input_json_delta":
            piece = delta.get("partial_json")
            return self.b.args_delta(it, piece) if isinstance(piece, str) and piece else []
        if dt == "thinking_delta":
            piece = delta.get("thinking")
            return self.b.summary_delta(it, piece) if isinstance(piece, str) and piece else []
        if dt == "signature_delta":
            # Anthropic sends the whole signature in one delta; replace, don't append.
            it.args[:] = [str(delta.get("signature") or "")]
        return []

    def finish(self) -> list[JSONDict]:
        sr = self.stop_reason
        if sr in ("max_tokens", "model_context_window_exceeded"):
            return self.b.finish("incomplete", "max_output_tokens")
        if sr == "refusal":
            return self.b.finish("incomplete", "content_filter")
        return self.b.finish()


class ResponsesDecoder:
    """Responses upstream events are already canonical; parse, strip vendor extras, note usage."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.terminal = False

    def feed(self, ev: SseEvent) -> list[JSONDict]:
        if ev.data.strip() == b"[DONE]":
            return []
        data = loads_event(ev.data)
        typ = data.get("type")
        if not isinstance(typ, str):
            typ = ev.event or ""
            data["type"] = typ
        if typ.startswith("codex."):
            return []  # Codex-only rate-limit/metadata events (docs/protocols/responses.md#stream-events)
        if typ in TERMINAL_TYPES:
            self.terminal = True
            u = as_dict(data.get("response")).get("usage")
            if isinstance(u, dict):
                self.usage = usage_from(Dialect.RESPONSES, u)
        elif typ == "error":
            self.terminal = True
        return [data]

    def finish(self) -> list[JSONDict]:
        return []
