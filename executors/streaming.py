"""Stream plumbing shared by executors: bounded reads, SSE relay, opening a stream (the
handshake read that decides "error before first content"), assembling a streamed answer."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import orjson

from executors.base import UpstreamError, UpstreamResponse, UpstreamStreamError
from executors.errors import bad_response, stream_failed
from formats import Dialect, SseEvent, SseParser, UpstreamFormatError, is_error_event, is_handshake

RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete"})


def looks_like_event(ev: SseEvent) -> bool:
    # O(1) framing check instead of a JSON parse per event: catches garbage and truncated
    # objects, which is what broken upstreams and middleboxes produce.
    data = ev.data.rstrip()
    return data == b"[DONE]" or (data[:1] == b"{" and data[-1:] == b"}")


async def relay_events(
    response: httpx.Response, *, source: str = "upstream", strict_json: bool = True
) -> AsyncGenerator[SseEvent, None]:
    """Upstream bytes -> SSE events as they arrive; transport and framing faults become
    UpstreamStreamError with a stable code. `strict_json` adds the O(1) framing check for
    streams whose every payload is a JSON object (or `[DONE]`)."""
    parser = SseParser()
    try:
        async for chunk in response.aiter_bytes():
            for ev in parser.feed(chunk):
                if strict_json and not looks_like_event(ev):
                    raise UpstreamStreamError(f"{source} sent a malformed stream event", "upstream_malformed_stream")
                yield ev
        for ev in parser.flush():
            if strict_json and not looks_like_event(ev):
                raise UpstreamStreamError(f"{source} sent a malformed stream event", "upstream_malformed_stream")
            yield ev
    except UpstreamFormatError as exc:
        raise UpstreamStreamError(
            f"{source} sent a malformed stream ({exc.message})", "upstream_malformed_stream"
        ) from None
    except httpx.HTTPError as exc:
        raise UpstreamStreamError(f"{source} stream broke ({type(exc).__name__})", "upstream_stream_cut") from None


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# Read at most this many events before committing to an upstream (a handshake is 1-4 events).
MAX_HANDSHAKE_EVENTS = 16
StreamErrorOf = Callable[[SseEvent], Awaitable[UpstreamError]]


async def open_stream(
    events: AsyncIterator[SseEvent],
    *,
    dialect: Dialect,
    request_id: str,
    error_of: StreamErrorOf,
    closers: Sequence[Callable[[], Awaitable[Any]]] = (),
    headers: dict[str, str] | None = None,
    provider_meta: dict[str, Any] | None = None,
) -> UpstreamResponse:
    """The one place an upstream stream is opened: read the handshake and the first real event
    before committing to this upstream, so an error hidden in a 200 stream (before any content)
    still fails over; then hand back everything as it arrives.

    `error_of` classifies an error event (the provider's table); `closers` release the
    upstream (stream, response, socket) when the reply is closed or the open fails."""
    head: list[SseEvent] = []
    try:
        while True:
            ev = await anext(events)
            if is_error_event(dialect, ev):
                raise await error_of(ev)
            head.append(ev)
            if not is_handshake(dialect, ev) or len(head) >= MAX_HANDSHAKE_EVENTS:
                break
    except StopAsyncIteration:
        raise bad_response("upstream stream ended before any content", request_id, "upstream_empty_stream") from None
    except UpstreamStreamError as exc:
        raise stream_failed(exc, request_id) from None

    async def chained() -> AsyncIterator[SseEvent]:
        for item in head:
            yield item
        async for item in events:
            yield item

    out = UpstreamResponse(
        dialect=dialect,
        request_id=request_id,
        events=chained(),
        headers=headers or {},
        provider_meta=provider_meta or {},
    )
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        out._closers.append(aclose)
    out._closers.extend(closers)
    return out


async def assemble_response(opened: UpstreamResponse, error_of: StreamErrorOf) -> UpstreamResponse:
    """A non-stream client on a streamed Responses upstream: the final response object from the
    terminal event, its output rebuilt from `output_item.done` events when it came empty."""
    assert opened.events is not None
    items: list[Any] = []
    final: dict[str, Any] | None = None
    try:
        async for ev in opened.events:
            obj = orjson.loads(ev.data)
            if not isinstance(obj, dict):
                continue
            kind = obj.get("type")
            if kind == "response.output_item.done" and isinstance(obj.get("item"), dict):
                items.append(obj["item"])
            elif kind in ("response.failed", "error"):
                raise await error_of(ev)
            elif kind in RESPONSES_TERMINAL:
                final = obj.get("response") if isinstance(obj.get("response"), dict) else None
                break
    except UpstreamStreamError as exc:
        raise stream_failed(exc, opened.request_id) from None
    finally:
        await opened.aclose()
    if final is None:
        cut = "upstream stream ended before the response completed"
        raise bad_response(cut, opened.request_id, "upstream_stream_cut")
    if not final.get("output"):
        final = {**final, "output": items}
    return UpstreamResponse(
        dialect=Dialect.RESPONSES,
        request_id=opened.request_id,
        body=final,
        headers=opened.headers,
        provider_meta=opened.provider_meta,
    )
