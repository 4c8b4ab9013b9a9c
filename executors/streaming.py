"""Stream plumbing shared by executors: bounded reads, SSE relay, the handshake read."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable

import httpx
import orjson

from executors.base import UpstreamError, UpstreamResponse, UpstreamStreamError
from formats import Dialect, SseEvent, SseParser, UpstreamFormatError


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


def event_type(ev: SseEvent) -> str:
    """The event's type: the SSE `event:` name, else the JSON payload's leading "type"."""
    if ev.event:
        return ev.event
    if ev.data.startswith(b'{"type":'):
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            return ""
        if isinstance(obj, dict):
            return str(obj.get("type") or "")
    return ""


# Events that only open a stream: nothing the client could use has arrived yet.
_MAX_HANDSHAKE_EVENTS = 16


async def open_event_stream(
    response: httpx.Response,
    *,
    dialect: Dialect,
    request_id: str,
    first_event_error: Callable[[SseEvent], UpstreamError | None],
    events: AsyncIterator[SseEvent] | None = None,
    handshake: frozenset[str] = frozenset(),
) -> UpstreamResponse:
    """Read the handshake before committing to this upstream, so an error hidden in a 200
    stream still fails over; then hand back the rest as it arrives. The handshake is the first
    event plus any that follow while they are of a `handshake` type (e.g. `response.created`):
    an error among them (`first_event_error`) is raised, not relayed."""
    stream = events if events is not None else relay_events(response)
    head: list[SseEvent] = []
    try:
        while True:
            ev = await anext(stream)
            error = first_event_error(ev)
            if error is not None:
                raise error
            head.append(ev)
            if event_type(ev) not in handshake or len(head) >= _MAX_HANDSHAKE_EVENTS:
                break
    except StopAsyncIteration:
        raise UpstreamError(
            status=502,
            message="upstream stream ended before any event" if not head else "upstream stream ended in its handshake",
            retryable=True,
            request_id=request_id,
            code="upstream_empty_stream",
        ) from None
    except UpstreamStreamError as exc:
        raise UpstreamError(
            status=502, message=str(exc), retryable=True, request_id=request_id, code=exc.code
        ) from None

    async def chained() -> AsyncIterator[SseEvent]:
        for item in head:
            yield item
        async for item in stream:
            yield item

    out = UpstreamResponse(dialect=dialect, request_id=request_id, events=chained())
    out._closers.append(stream.aclose)  # type: ignore[attr-defined]
    out._closers.append(response.aclose)
    return out
