"""A fast fake OpenAI-compatible upstream for benchmarks: raw asyncio + httptools on uvloop.

The shape of each answer is read from the request body itself, so it survives any proxy in
between: a substring ``bench:CHUNKS:INTERVAL_MS`` anywhere in the body (normally the user
message) asks for a stream of CHUNKS content events, INTERVAL_MS apart (first one at once).

- ``POST /v1/chat/completions``: non-stream JSON, or SSE chunks (+ usage chunk when
  ``stream_options.include_usage`` is true) and ``data: [DONE]``.
- ``POST /v1/responses``: Responses-API SSE (created, output_text.delta x N, completed).
- ``GET /v1/models``: one model list.

Usage: ``python -m bench.fake_upstream --port 9300``. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from typing import cast

import httptools
import orjson
import uvloop

_SPEC = re.compile(rb"bench:(\d+):(\d+(?:\.\d+)?)")
_MAX_CHUNKS = 10_000
_USAGE = {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 0}


def _spec(body: bytes) -> tuple[int, float]:
    m = _SPEC.search(body)
    if m is None:
        return 20, 0.0
    return min(int(m.group(1)), _MAX_CHUNKS), float(m.group(2)) / 1000.0


def _model(body: bytes) -> str:
    m = re.search(rb'"model"\s*:\s*"([^"]{1,100})"', body)
    return m.group(1).decode() if m else "bench-model"


def _head(status: str, ctype: bytes, length: int | None) -> bytes:
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + ctype
        + b"\r\n"
        + framing
        + (b"\r\nx-request-id: req-bench\r\n\r\n")
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _chat_whole(model: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the bench."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
        }
    )


def _chat_events(model: str, n: int, usage: bool) -> list[bytes]:
    base = b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"%b",' % (
        model.encode()
    )
    out = [base + b'"choices":[{"index":0,"delta":{"role":"assistant","content":"tok0 "},"finish_reason":null}]}']
    for i in range(1, n - 1):
        out.append(base + b'"choices":[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}]}' % i)
    if n > 1:
        out.append(base + b'"choices":[{"index":0,"delta":{"content":"end"},"finish_reason":"stop"}]}')
    events = [b"data: " + e + b"\n\n" for e in out]
    if usage:
        u = orjson.dumps({**_USAGE, "completion_tokens": n, "total_tokens": 12 + n})
        events[-1] += b"data: " + base + b'"choices":[],"usage":' + u + b"}\n\n"
    events[-1] += b"data: [DONE]\n\n"
    return events


def _sse(name: str, payload: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


def _responses_events(model: str, n: int) -> list[bytes]:
    resp: dict[str, object] = {"id": "resp_bench", "object": "response", "created_at": 1700000000, "model": model}
    item = {"id": "msg_bench", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    head = (
        _sse("response.created", {"sequence_number": 0, "response": {**resp, "status": "in_progress", "output": []}})
        + _sse("response.output_item.added", {"sequence_number": 1, "output_index": 0, "item": item})
        + _sse(
            "response.content_part.added",
            {"sequence_number": 2, "item_id": "msg_bench", "output_index": 0, "content_index": 0, "part": part},
        )
    )
    events = []
    for i in range(n):
        ev = _sse(
            "response.output_text.delta",
            {
                "sequence_number": 3 + i,
                "item_id": "msg_bench",
                "output_index": 0,
                "content_index": 0,
                "delta": f"tok{i} ",
            },
        )
        events.append(head + ev if i == 0 else ev)
    text = "".join(f"tok{i} " for i in range(n))
    done = {**item, "status": "completed", "content": [{**part, "text": text}]}
    seq = 3 + n
    events[-1] += (
        _sse(
            "response.output_text.done",
            {"sequence_number": seq, "item_id": "msg_bench", "output_index": 0, "content_index": 0, "text": text},
        )
        + _sse("response.output_item.done", {"sequence_number": seq + 1, "output_index": 0, "item": done})
        + _sse(
            "response.completed",
            {
                "sequence_number": seq + 2,
                "response": {
                    **resp,
                    "status": "completed",
                    "output": [done],
                    "usage": {
                        "input_tokens": 12,
                        "output_tokens": n,
                        "total_tokens": 12 + n,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens_details": {"reasoning_tokens": 0},
                    },
                },
            },
        )
    )
    return events


_MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": "bench-model", "object": "model", "created": 0, "owned_by": "bench"}]}
)


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy is not None:
            self.busy.cancel()

    def on_message_begin(self) -> None:
        self.url, self.body = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        t = self.transport
        assert t is not None
        body = b"".join(self.body)
        method, path = self.parser.get_method(), self.url.split(b"?", 1)[0]
        if method == b"GET" and path == b"/v1/models":
            t.write(_head("200 OK", b"application/json", len(_MODELS)) + _MODELS)
            return
        if method != b"POST" or path not in (b"/v1/chat/completions", b"/v1/responses"):
            msg = b'{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}'
            t.write(_head("404 Not Found", b"application/json", len(msg)) + msg)
            return
        model, (n, interval) = _model(body), _spec(body)
        if path == b"/v1/responses":
            events = _responses_events(model, max(n, 1))
        elif re.search(rb'"stream"\s*:\s*true', body) is None:
            whole = _chat_whole(model)
            t.write(_head("200 OK", b"application/json", len(whole)) + whole)
            return
        else:
            usage = re.search(rb'"include_usage"\s*:\s*true', body) is not None
            events = _chat_events(model, max(n, 1), usage)
        t.write(_head("200 OK", b"text/event-stream", None) + _chunk(events[0]))
        if len(events) == 1 or interval <= 0:
            t.write(b"".join(_chunk(e) for e in events[1:]) + b"0\r\n\r\n")
            return
        self.busy = asyncio.get_running_loop().create_task(self._paced(events, interval))

    async def _paced(self, events: list[bytes], interval: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        t = self.transport
        assert t is not None
        for i, ev in enumerate(events[1:], start=1):
            delay = start + i * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if t.is_closing():
                return
            t.write(_chunk(ev))
        t.write(b"0\r\n\r\n")


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Conn, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream listening on http://{host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9300)
    args = ap.parse_args()
    if not args.host.startswith("127."):
        raise SystemExit("loopback only")
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
