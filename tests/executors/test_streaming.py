"""executors.streaming.open_stream: the one rule for "an error before the first content fails over"."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from executors.base import UpstreamError, UpstreamStreamError
from executors.errors import bad_response
from executors.streaming import MAX_HANDSHAKE_EVENTS, open_stream
from formats import Dialect, SseEvent

CREATED = SseEvent("response.created", b'{"type":"response.created"}')
FAILED = SseEvent("response.failed", b'{"type":"response.failed","response":{"error":{"message":"x"}}}')
DELTA = SseEvent("response.output_text.delta", b'{"type":"response.output_text.delta","delta":"hi"}')


async def _events(*events: SseEvent, then: Exception | None = None) -> AsyncIterator[SseEvent]:
    for ev in events:
        yield ev
    if then is not None:
        raise then


async def _error_of(ev: SseEvent) -> UpstreamError:
    return bad_response(f"classified {ev.event}", code="classified")


async def test_an_error_after_the_handshake_still_fails_over() -> None:
    with pytest.raises(UpstreamError) as err:
        await open_stream(
            _events(CREATED, FAILED, DELTA), dialect=Dialect.RESPONSES, request_id="r", error_of=_error_of
        )
    assert err.value.code == "classified" and err.value.retryable


async def test_content_commits_and_every_event_is_handed_back_in_order() -> None:
    opened = await open_stream(
        _events(CREATED, DELTA, FAILED), dialect=Dialect.RESPONSES, request_id="r", error_of=_error_of
    )
    assert opened.events is not None
    assert [ev.event async for ev in opened.events] == [
        "response.created",
        "response.output_text.delta",
        "response.failed",
    ]


async def test_a_stream_that_ends_or_breaks_before_content_is_a_failover_error() -> None:
    with pytest.raises(UpstreamError) as ended:
        await open_stream(_events(CREATED), dialect=Dialect.RESPONSES, request_id="r", error_of=_error_of)
    assert ended.value.code == "upstream_empty_stream"
    cut = UpstreamStreamError("cut", "upstream_stream_cut")
    with pytest.raises(UpstreamError) as broke:
        await open_stream(_events(CREATED, then=cut), dialect=Dialect.RESPONSES, request_id="r", error_of=_error_of)
    assert broke.value.code == "upstream_stream_cut" and broke.value.retryable


async def test_the_handshake_read_is_bounded() -> None:
    pings = [SseEvent("ping", b'{"type":"ping"}')] * (MAX_HANDSHAKE_EVENTS + 5)
    opened = await open_stream(_events(*pings), dialect=Dialect.MESSAGES, request_id="r", error_of=_error_of)
    assert opened.events is not None
    assert len([ev async for ev in opened.events]) == MAX_HANDSHAKE_EVENTS + 5
