"""Property tests: translators return valid output or raise one of the two typed errors."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import openai
import orjson
from fmt_helpers import FIXTURES, sse_transport, to_bytes, upstream_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats import (
    Dialect,
    InvalidRequest,
    SseEvent,
    SseParser,
    StreamTranslator,
    UnsupportedFeature,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_from_upstream,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (UnsupportedFeature, InvalidRequest)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "text",
                    "role",
                    "content",
                    "id",
                    "name",
                    "input",
                    "arguments",
                    "call_id",
                    "output",
                    "tool_use_id",
                    "source",
                    "image_url",
                    "function",
                    "signature",
                    "thinking",
                    "data",
                    "url",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)

text = st.text(max_size=20)
chat_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries(
                {"url": st.sampled_from(["https://x/y.png", "data:image/png;base64,AAAA"])}
            ),
        }
    ),
    json_values.filter(lambda v: isinstance(v, dict)),
)
call_ids = st.sampled_from(["call_1", "call_2", "toolu_3"])
chat_msg = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user"]),
            "content": st.one_of(text, st.lists(chat_part, max_size=3)),
        }
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.one_of(st.none(), text),
            "tool_calls": st.lists(
                st.fixed_dictionaries(
                    {
                        "id": call_ids,
                        "type": st.just("function"),
                        "function": st.fixed_dictionaries(
                            {"name": st.sampled_from(["f", "g"]), "arguments": st.sampled_from(['{"a":1}', "", "{bad"])}
                        ),
                    }
                ),
                max_size=2,
            ),
        }
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": call_ids, "content": text}),
    json_values,
)
anth_block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_use"),
            "id": call_ids,
            "name": st.just("f"),
            "input": st.dictionaries(st.text(max_size=3), scalars, max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_result"),
            "tool_use_id": call_ids,
            "content": st.one_of(
                text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2)
            ),
            "is_error": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("thinking"), "thinking": text, "signature": st.sampled_from(["sig", "enc@rs_1", "@rs_2", ""])}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("image"),
            "source": st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["base64", "url", "file"]),
                    "media_type": st.just("image/png"),
                    "data": st.just("AAAA"),
                    "url": st.just("https://x/y.png"),
                }
            ),
        }
    ),
    json_values.filter(lambda v: isinstance(v, dict)),
)
anth_msg = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system"]),
        "content": st.one_of(text, st.lists(anth_block, max_size=4)),
    }
)
resp_item = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "developer", "system"]),
            "content": st.one_of(
                text,
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "type": st.sampled_from(["input_text", "output_text", "input_image", "refusal"]),
                            "text": text,
                            "image_url": st.just("https://x/y.png"),
                            "refusal": text,
                        }
                    ),
                    max_size=3,
                ),
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("function_call"),
            "call_id": call_ids,
            "name": st.just("f"),
            "arguments": st.sampled_from(['{"a":1}', "", "[1]", "{bad"]),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("custom_tool_call"), "call_id": call_ids, "name": st.just("p"), "input": text}
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["function_call_output", "custom_tool_call_output"]),
            "call_id": call_ids,
            "output": text,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("reasoning"),
            "id": st.sampled_from(["rs_1", "rs_ant_x", "rs_ant_r_y"]),
            "summary": st.just([{"type": "summary_text", "text": "s"}]),
            "encrypted_content": st.sampled_from(["enc", ""]),
        }
    ),
    json_values,
)
tools = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("function"), "name": st.just("f"), "parameters": st.just({"type": "object"})}
        ),
        st.fixed_dictionaries({"type": st.just("custom"), "name": st.just("p")}),
        st.fixed_dictionaries({"type": st.sampled_from(["web_search", "namespace", "tool_search", "file_search"])}),
    ),
    max_size=3,
)
extras = st.dictionaries(
    st.sampled_from(
        [
            "temperature",
            "top_p",
            "stream",
            "max_tokens",
            "max_output_tokens",
            "tool_choice",
            "stop",
            "n",
            "metadata",
            "reasoning",
            "text",
            "thinking",
            "response_format",
            "user",
            "parallel_tool_calls",
            "stop_sequences",
        ]
    ),
    json_values,
    max_size=3,
)

bodies = {
    Dialect.CHAT: st.builds(lambda m, e: {"model": "m", "messages": m, **e}, st.lists(chat_msg, max_size=5), extras),
    Dialect.MESSAGES: st.builds(
        lambda m, t, e: {"model": "m", "max_tokens": 100, "messages": m, "tools": t, **e},
        st.lists(anth_msg, max_size=5),
        st.just([{"name": "f", "input_schema": {"type": "object"}}]),
        extras,
    ),
    Dialect.RESPONSES: st.builds(
        lambda i, t, e: {"model": "m", "input": i, "tools": t, **e},
        st.one_of(text, st.lists(resp_item, max_size=6)),
        tools,
        extras,
    ),
}


def _check_request(dialect: Dialect, body: Any) -> None:
    try:
        canonical = decode_request(dialect, body)
    except ALLOWED:
        return
    assert isinstance(canonical, dict)
    for target in Dialect:
        try:
            out = encode_request(canonical, target)
        except ALLOWED:
            continue
        assert isinstance(out, dict) and out["model"] == "m"
        orjson.dumps(out)  # always serialisable


@SETTINGS
@given(bodies[Dialect.CHAT])
def test_chat_requests_never_crash(body: Any) -> None:
    _check_request(Dialect.CHAT, body)


@SETTINGS
@given(bodies[Dialect.MESSAGES])
def test_messages_requests_never_crash(body: Any) -> None:
    _check_request(Dialect.MESSAGES, body)


@SETTINGS
@given(bodies[Dialect.RESPONSES])
def test_responses_requests_never_crash(body: Any) -> None:
    _check_request(Dialect.RESPONSES, body)


@SETTINGS
@given(st.sampled_from(list(Dialect)), json_values)
def test_garbage_requests_and_responses_never_crash(dialect: Dialect, body: Any) -> None:
    _check_request(dialect, body)
    try:
        canonical = decode_response(dialect, body)
        for target in Dialect:
            encode_response(canonical, target, model="m")
    except ALLOWED:
        pass


# ------------------------------------------------------------------- streams

POOL = [ev for names in FIXTURES.values() for n in names for ev in upstream_events(n)]


def _mutate(ev: SseEvent, junk: Any) -> SseEvent:
    try:
        obj = orjson.loads(ev.data)
    except orjson.JSONDecodeError:
        return ev
    if isinstance(obj, dict) and isinstance(junk, dict):
        obj.update(junk)
    return SseEvent(ev.event, orjson.dumps(obj))


events = st.one_of(
    st.sampled_from(POOL),
    st.builds(_mutate, st.sampled_from(POOL), json_values),
    st.builds(lambda v: SseEvent(None, orjson.dumps(v)), json_values),
    st.just(SseEvent(None, b"[DONE]")),
    st.just(SseEvent(None, b"not json")),
)


@SETTINGS
@given(st.sampled_from(list(Dialect)), st.sampled_from(list(Dialect)), st.lists(events, max_size=25))
def test_stream_translators_never_crash(source: Dialect, target: Dialect, evs: list[SseEvent]) -> None:
    t = StreamTranslator(source, target, model="m", custom_tools={"apply_patch"})
    out: list[SseEvent] = []
    for ev in evs:
        # a bad upstream event may raise one of the typed errors; anything else is a bug
        with contextlib.suppress(*ALLOWED):
            out += t.feed(ev)
    out += t.finish()
    out += t.error_events(message="x", type="server_error", code=None)
    assert all(isinstance(e, SseEvent) for e in out)


def _chat_chunk(delta: dict[str, Any], finish: str | None = None) -> SseEvent:
    return SseEvent(
        None,
        orjson.dumps(
            {
                "id": "chatcmpl-1",
                "created": 1,
                "model": "u",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        ),
    )


chat_pieces = st.lists(
    st.one_of(
        st.builds(lambda s: {"content": s}, st.text(min_size=1, max_size=5)),
        st.builds(lambda s: {"reasoning_content": s}, st.text(min_size=1, max_size=5)),
        st.builds(lambda s: {"refusal": s}, st.text(min_size=1, max_size=5)),
        st.builds(
            lambda i, s: {
                "tool_calls": [
                    {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": s}}
                ]
            },
            st.integers(0, 3),
            st.sampled_from(["", '{"a":', "1}"]),
        ),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(chat_pieces, st.sampled_from(["stop", "tool_calls", "length"]))
def test_generated_chat_streams_satisfy_responses_sdk(pieces: list[dict[str, Any]], finish: str) -> None:
    evs = [_chat_chunk(p) for p in pieces] + [_chat_chunk({}, finish), SseEvent(None, b"[DONE]")]
    t = StreamTranslator(Dialect.CHAT, Dialect.RESPONSES, model="m")
    out = [e for ev in evs for e in t.feed(ev)] + t.finish()
    client = openai.OpenAI(
        base_url="http://p/v1",
        api_key="k",
        max_retries=0,
        http_client=httpx.Client(transport=sse_transport(to_bytes(out))),
    )
    with client.responses.stream(model="m", input="hi") as stream:
        if finish == "length":
            for _ in stream:
                pass
            return
        final = stream.get_final_response()
    expected = "".join(p.get("content", "") for p in pieces)
    assert final.output_text == expected


@SETTINGS
@given(st.binary(max_size=200), st.integers(1, 16))
def test_sse_parser_never_crashes_on_bytes(raw: bytes, step: int) -> None:
    p = SseParser(max_event_bytes=1 << 16)
    for i in range(0, len(raw), step):
        p.feed(raw[i : i + step])
    p.flush()


@SETTINGS
@given(
    st.sampled_from(list(Dialect)),
    st.integers(100, 599),
    st.binary(max_size=100) | st.builds(orjson.dumps, json_values),
)
def test_error_from_upstream_never_raises(dialect: Dialect, status: int, body: bytes) -> None:
    msg, _, _ = error_from_upstream(dialect, status, body)
    assert isinstance(msg, str) and msg
