"""Context compaction, as pure functions (docs/protocols/compaction.md).

Two client shapes ask for it:
- a Responses request whose input ends with a `{"type": "compaction_trigger"}` control item
  (Codex CLI's remote compaction): the answer must carry exactly one `compaction` output item;
- `POST /v1/responses/compact`: the answer is a `response.compaction` object whose `output` is
  the conversation's user messages followed by one `compaction` item.

A Codex account does both natively and returns an opaque `encrypted_content` only the Codex
backend can read. Every other upstream gets an emulation: an ordinary summarising turn on the
same model, whose text the proxy wraps into its own `compaction` item (`PROXY_BLOB_PREFIX` +
base64url of the summary). On a later turn the proxy expands its own items back into a plain
user message for any upstream (a Codex one included); a Codex blob is never sent to a
non-Codex upstream (UnsupportedFeature names the item: a 400 when no Codex account can serve).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from ._common import input_items
from ._core import JSONDict, UnsupportedFeature
from .ids import new_id

TRIGGER = "compaction_trigger"
# `compaction_summary` is an older name of the same item (openai/codex protocol models.rs alias).
COMPACTION_TYPES = frozenset({"compaction", "compaction_summary"})
PROXY_BLOB_PREFIX = "llmproxy-summary-v1:"
SUMMARY_HEADER = "Summary of the earlier conversation (the context was compacted):"
SUMMARY_PROMPT = (
    "The conversation above is about to be compacted: everything before this message will be "
    "replaced by your summary. Write that summary now. Keep what is needed to continue the "
    "work: the user's goals and requests, decisions taken, the current state (files, commands, "
    "results, errors), and what remains to be done. Answer in plain text only, with no preamble."
)


def has_trigger(body: JSONDict) -> bool:
    items = body.get("input")
    return isinstance(items, list) and any(isinstance(i, dict) and i.get("type") == TRIGGER for i in items)


def has_compaction_items(body: JSONDict) -> bool:
    items = body.get("input")
    return isinstance(items, list) and any(isinstance(i, dict) and i.get("type") in COMPACTION_TYPES for i in items)


def proxy_blob(summary: str) -> str:
    return PROXY_BLOB_PREFIX + base64.urlsafe_b64encode(summary.encode()).decode()


def proxy_summary(blob: Any) -> str | None:
    """The summary inside one of the proxy's own blobs; None for anything else (a Codex blob)."""
    if not isinstance(blob, str) or not blob.startswith(PROXY_BLOB_PREFIX):
        return None
    try:
        return base64.b64decode(blob[len(PROXY_BLOB_PREFIX) :].encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def summary_message(summary: str) -> JSONDict:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": f"{SUMMARY_HEADER}\n\n{summary}"}],
    }


def compaction_expand(canonical: JSONDict, *, keep_foreign: bool) -> JSONDict:
    """The request with the proxy's own compaction items turned back into summary messages.

    `keep_foreign`: the target is a Codex account, which reads its own blobs; otherwise a blob
    the proxy did not make raises UnsupportedFeature (it cannot be read anywhere else)."""
    if not has_compaction_items(canonical):
        return canonical
    out: list[JSONDict] = []
    for i, item in enumerate(input_items(canonical)):
        if item.get("type") not in COMPACTION_TYPES:
            out.append(item)
            continue
        summary = proxy_summary(item.get("encrypted_content"))
        if summary is not None:
            out.append(summary_message(summary))
        elif keep_foreign:
            out.append(item)
        else:
            raise UnsupportedFeature(
                f"input[{i}]",
                "this compaction item was made by a Codex account (encrypted for the ChatGPT backend); "
                "only a Codex account can continue this conversation",
            )
    return {**canonical, "input": out}


def summarise_request(canonical: JSONDict) -> JSONDict:
    """The emulation's upstream request: the same conversation (trigger removed, earlier proxy
    summaries expanded) plus an instruction to summarise it. Tools stay declared (a history
    with tool calls needs them on some upstreams) but may not be called; structured output
    and previous-turn state do not apply."""
    body = compaction_expand(canonical, keep_foreign=False)
    items = [i for i in input_items(body) if i.get("type") != TRIGGER]
    items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": SUMMARY_PROMPT}]})
    out = {k: v for k, v in body.items() if k not in ("text", "tool_choice", "parallel_tool_calls")}
    out["input"] = items
    out["stream"] = False
    if out.get("tools"):
        out["tool_choice"] = "none"
    else:
        out.pop("tools", None)
    return out


def response_text(response: JSONDict) -> str:
    """The assistant text of a Responses object (what the summarising turn wrote)."""
    texts: list[str] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") in ("output_text", "text"):
                texts.append(str(part.get("text") or ""))
    return "".join(texts).strip()


def compaction_item(summary: str) -> JSONDict:
    return {"id": new_id("cmp_"), "type": "compaction", "encrypted_content": proxy_blob(summary)}


def trigger_response(summary: str, *, model: str, usage: JSONDict | None) -> JSONDict:
    """A completed Responses object whose only output is the proxy's compaction item."""
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [compaction_item(summary)],
        "usage": usage,
    }


def endpoint_response(canonical: JSONDict, summary: str, *, usage: JSONDict | None) -> JSONDict:
    """`/v1/responses/compact`'s object: the user messages of the input, then one compaction item."""
    users = [
        i
        for i in input_items(compaction_expand(canonical, keep_foreign=True))
        if i.get("type") == "message" and i.get("role") == "user"
    ]
    return {
        "id": new_id("resp_"),
        "object": "response.compaction",
        "created_at": int(time.time()),
        "output": [*users, compaction_item(summary)],
        "usage": usage,
    }


def response_events(final: JSONDict) -> list[tuple[str, JSONDict]]:
    """A completed Responses object as the stream events a streaming client expects (the
    emulated answer is a single opaque item: nothing arrives piecemeal)."""
    start = {**final, "status": "in_progress", "output": [], "usage": None}
    events: list[tuple[str, JSONDict]] = [
        ("response.created", {"response": start}),
        ("response.in_progress", {"response": start}),
    ]
    for idx, item in enumerate(final.get("output") or []):
        events.append(("response.output_item.added", {"output_index": idx, "item": item}))
        events.append(("response.output_item.done", {"output_index": idx, "item": item}))
    events.append(("response.completed", {"response": final}))
    return [(name, {"type": name, "sequence_number": n, **data}) for n, (name, data) in enumerate(events)]
