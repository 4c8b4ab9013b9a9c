"""Translation cost per stream event and per request, per direction (plain script).

    python bench/bench_formats.py

Uses the golden upstream fixtures in tests/formats/golden; numbers are wall-clock
microseconds on this machine (best of 5 runs).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formats import (  # noqa: E402
    Dialect,
    SseEvent,
    SseParser,
    StreamTranslator,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    encode_sse,
)
from formats.tokens import count_tokens  # noqa: E402

GOLDEN = ROOT / "tests" / "formats" / "golden"
STREAMS = {Dialect.CHAT: "chat_tools", Dialect.MESSAGES: "messages_tools", Dialect.RESPONSES: "responses_tools"}
REQUESTS = {
    Dialect.CHAT: "sdk_tools.chat",
    Dialect.MESSAGES: "claude_code.messages",
    Dialect.RESPONSES: "codex.responses",
}


def best(fn: Callable[[], object], n: int) -> float:
    """Best-of-5 time per call in µs."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return min(times)


def main() -> None:
    print("stream translation, µs per upstream event (feed + encode_sse)")
    for src, name in STREAMS.items():
        raw = (GOLDEN / "upstream" / f"{name}.sse").read_bytes()
        p = SseParser()
        events = p.feed(raw) + p.flush()
        for tgt in Dialect:

            def run(src: Dialect = src, tgt: Dialect = tgt, events: list[SseEvent] = events) -> None:
                t = StreamTranslator(src, tgt, model="m", custom_tools={"apply_patch"})
                for ev in events:
                    for out in t.feed(ev):
                        encode_sse(out)
                for out in t.finish():
                    encode_sse(out)

            us = best(run, 300) / len(events)
            print(f"  {src.value:>9} -> {tgt.value:<9} {us:7.2f} µs/event  ({len(events)} events)")

    raw = b"".join((GOLDEN / "upstream" / f"{n}.sse").read_bytes() for n in STREAMS.values()) * 20
    count = len(SseParser().feed(raw))
    print(
        f"\nSseParser: {best(lambda: SseParser().feed(raw), 20) / count:.2f} µs/event "
        f"({count} events, {len(raw)} bytes in one chunk)"
    )
    chunks = [raw[i : i + 64] for i in range(0, len(raw), 64)]

    def chunked() -> None:
        p = SseParser()
        for c in chunks:
            p.feed(c)

    print(f"SseParser: {best(chunked, 20) / count:.2f} µs/event (64-byte chunks)")

    print("\nrequest translation, µs per request (decode_request + encode_request)")
    for src, name in REQUESTS.items():
        body = orjson.loads((GOLDEN / "requests" / f"{name}.json").read_bytes())
        canonical = decode_request(src, body)
        for tgt in Dialect:
            try:
                encode_request(canonical, tgt)
            except Exception as exc:
                print(f"  {src.value:>9} -> {tgt.value:<9} rejected ({exc})")
                continue
            us = best(lambda src=src, body=body, tgt=tgt: encode_request(decode_request(src, body), tgt), 2000)
            print(f"  {src.value:>9} -> {tgt.value:<9} {us:7.2f} µs")
        print(f"  count_tokens({name}): {best(lambda c=canonical: count_tokens(c), 500):7.2f} µs")

    print("\nnon-stream response translation, µs (decode_response + encode_response)")
    fixtures = {
        Dialect.CHAT: {
            "id": "chatcmpl-1",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hello " * 50}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
        Dialect.MESSAGES: {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [{"type": "text", "text": "Hello " * 50}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
    }
    for src, body in fixtures.items():
        for tgt in Dialect:
            us = best(
                lambda src=src, body=body, tgt=tgt: encode_response(decode_response(src, body), tgt, model="m"), 5000
            )
            print(f"  {src.value:>9} -> {tgt.value:<9} {us:7.2f} µs")


if __name__ == "__main__":
    main()
