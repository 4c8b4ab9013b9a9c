"""Helpers for the formats tests (pure; no Django needed). A uniquely named module, not
conftest, so it can be imported next to other test packages' helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from formats import Dialect, SseEvent, SseParser, StreamTranslator, encode_sse

GOLDEN = Path(__file__).parent / "golden"
UPSTREAM = GOLDEN / "upstream"
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))

# Which upstream fixtures exist per source dialect, and the custom tools their request had.
FIXTURES = {
    Dialect.CHAT: ["chat_text", "chat_tools"],
    Dialect.MESSAGES: ["messages_text", "messages_tools"],
    Dialect.RESPONSES: ["responses_text", "responses_tools"],
}
CUSTOM_TOOLS = frozenset({"apply_patch"})


def upstream_events(name: str) -> list[SseEvent]:
    p = SseParser()
    raw = (UPSTREAM / f"{name}.sse").read_bytes()
    return p.feed(raw) + p.flush()


def translate(source: Dialect, target: Dialect, events: list[SseEvent], **kw: Any) -> list[SseEvent]:
    kw.setdefault("model", "client-model")
    kw.setdefault("custom_tools", CUSTOM_TOOLS)
    t = StreamTranslator(source, target, **kw)
    out: list[SseEvent] = []
    for ev in events:
        out += t.feed(ev)
    return out + t.finish()


def to_bytes(events: list[SseEvent]) -> bytes:
    return b"".join(encode_sse(e) for e in events)


def check_golden(path: Path, actual: str) -> None:
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        if not UPDATE:
            pytest.fail(f"golden file {path.name} was missing and has been written; review it and re-run")
    assert actual == path.read_text()


def json_golden(path: Path, obj: Any) -> None:
    check_golden(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")


def sse_transport(body: bytes, *, status: int = 200, content_type: str = "text/event-stream") -> httpx.MockTransport:
    """An httpx transport that answers every request with ``body``: the SDKs' own stream
    accumulators then judge the bytes exactly as they would from a server."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return httpx.MockTransport(handler)
