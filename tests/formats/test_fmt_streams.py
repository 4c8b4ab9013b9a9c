"""Stream translation goldens (every fixture x every target) and docs/protocols/responses.md#ordering-rules
invariants."""

from __future__ import annotations

import re

import orjson
import pytest
from fmt_helpers import FIXTURES, GOLDEN, check_golden, to_bytes, translate, upstream_events

from formats import Dialect, SseEvent, StreamTranslator

CASES = [(src, name, tgt) for src, names in FIXTURES.items() for name in names for tgt in Dialect if tgt is not src]


def _normalise(raw: bytes) -> str:
    # Anthropic sources carry no timestamp, so one is taken from the clock.
    return re.sub(r'"(created|created_at)":\d+', r'"\1":0', raw.decode())


@pytest.mark.parametrize(("source", "name", "target"), CASES, ids=[f"{n}-to-{t.value}" for _, n, t in CASES])
def test_stream_golden(source: Dialect, name: str, target: Dialect) -> None:
    out = translate(source, target, upstream_events(name))
    check_golden(GOLDEN / "streams" / f"{name}.to_{target.value}.sse", _normalise(to_bytes(out)))


@pytest.mark.parametrize(
    ("source", "name"), [(s, n) for s, ns in FIXTURES.items() for n in ns if s is not Dialect.RESPONSES]
)
def test_responses_stream_invariants(source: Dialect, name: str) -> None:
    events = [orjson.loads(e.data) for e in translate(source, Dialect.RESPONSES, upstream_events(name))]
    assert events[0]["type"] == "response.created"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1
    added: dict[int, dict] = {}
    done: dict[int, dict] = {}
    for e in events:
        if e["type"] == "response.output_item.added":
            assert e["output_index"] not in added
            added[e["output_index"]] = e["item"]
        elif e["type"] == "response.output_item.done":
            done[e["output_index"]] = e["item"]
            assert e["item"]["id"] == added[e["output_index"]]["id"]
        elif "output_index" in e:
            assert e["output_index"] in added and e["output_index"] not in done
    assert added.keys() == done.keys()
    final = events[-1]
    assert final["type"] == "response.completed"
    assert [i["id"] for i in final["response"]["output"]] == [done[k]["id"] for k in sorted(done)]


def test_usage_is_reported_per_source() -> None:
    for source, name, expect in [
        (Dialect.CHAT, "chat_text", (8, 12, 2)),
        (Dialect.MESSAGES, "messages_text", (16, 12, 5)),
        (Dialect.RESPONSES, "responses_text", (10, 12, 4)),
    ]:
        for target in Dialect:
            t = StreamTranslator(source, target, model="m")
            for ev in upstream_events(name):
                t.feed(ev)
            t.finish()
            assert t.usage is not None, (source, target)
            assert (t.usage.input_tokens, t.usage.output_tokens, t.usage.cached_tokens) == expect


def test_identity_returns_the_same_event() -> None:
    t = StreamTranslator(Dialect.CHAT, Dialect.CHAT, model="m")
    ev = SseEvent(None, b'{"id":"x","choices":[]}')
    assert t.feed(ev) == [ev] and t.finish() == []


def test_finish_synthesises_terminal_when_source_lacks_it() -> None:
    evs = upstream_events("chat_text")[:3]  # no finish_reason, no [DONE]
    out = translate(Dialect.CHAT, Dialect.MESSAGES, evs)
    assert [e.event for e in out[-2:]] == ["message_delta", "message_stop"]
    out = translate(Dialect.CHAT, Dialect.RESPONSES, evs)
    assert out[-1].event == "response.completed"


def test_length_finish_maps_to_incomplete_and_max_tokens() -> None:
    evs = upstream_events("chat_text")
    evs[3] = SseEvent(None, evs[3].data.replace(b'"stop"', b'"length"'))
    out = translate(Dialect.CHAT, Dialect.RESPONSES, evs)
    last = orjson.loads(out[-1].data)
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    out = translate(Dialect.CHAT, Dialect.MESSAGES, evs)
    assert b'"stop_reason":"max_tokens"' in out[-2].data


def test_codex_style_done_only_items_are_translated() -> None:
    created = b'{"type":"response.created","response":{"id":"resp_1","created_at":1,"status":"in_progress"}}'
    done = (
        b'{"type":"response.output_item.done","output_index":0,"item":{"id":"msg_1","type":"message",'
        b'"role":"assistant","content":[{"type":"output_text","text":"Hi!","annotations":[]}]}}'
    )
    completed = b'{"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[]}}'
    evs = [SseEvent(None, created), SseEvent(None, done), SseEvent(None, completed)]
    chat = b"".join(e.data for e in translate(Dialect.RESPONSES, Dialect.CHAT, evs))
    assert b'"content":"Hi!"' in chat
    anth = to_bytes(translate(Dialect.RESPONSES, Dialect.MESSAGES, evs))
    assert b'"text_delta","text":"Hi!"' in anth and anth.count(b"event: content_block_start") == 1
