"""OpenAI-compatible upstream: an admin-configured base URL (ending in /v1) and an API key.

Streams are relayed event by event as they arrive; the first event is read before the
response is handed back, so an error that arrives as the first event of a 200 stream still
lets routing fail over before the client saw a byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from django.conf import settings

from accounts.selectors import AccountInfo
from executors.base import UpstreamCall, UpstreamError, UpstreamResponse
from executors.errors import classify_http_error, classify_transport_error
from executors.http import http_client
from formats import Dialect, SseEvent, SseParser, UpstreamFormatError, error_from_upstream

_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


class UpstreamStreamError(Exception):
    """The upstream stream broke after it started (cut, malformed event, error event)."""

    def __init__(self, message: str, code: str = "upstream_stream_error") -> None:
        super().__init__(message)
        self.code = code


def _upstream_body(call: UpstreamCall) -> dict[str, Any]:
    body = call.body_for(Dialect.CHAT)
    if call.stream:
        # Always ask for usage on streams so every request is accounted for; the relay hides
        # the extra chunk from clients that did not ask for it.
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    return body


def _looks_like_event(ev: SseEvent) -> bool:
    # O(1) framing check instead of a JSON parse per event: catches garbage and truncated
    # objects, which is what broken upstreams and middleboxes produce.
    data = ev.data.rstrip()
    return data == b"[DONE]" or (data[:1] == b"{" and data[-1:] == b"}")


class OpenAICompatExecutor:
    provider = "openai_compat"

    async def refresh_credential(self, account: AccountInfo) -> bool:
        return False  # a static API key has nothing to refresh

    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        api_key = call.account.secret.get("api_key", "")
        client = http_client("openai_compat")
        request = client.build_request(
            "POST",
            f"{call.account.base_url}/chat/completions",
            content=orjson.dumps(_upstream_body(call)),
            headers={
                "authorization": f"Bearer {api_key}",
                "content-type": "application/json",
                "accept": "text/event-stream" if call.stream else "application/json",
                # A compressed stream would be buffered by the compressor: ask for identity.
                **({"accept-encoding": "identity"} if call.stream else {}),
            },
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from None
        request_id = response.headers.get("x-request-id", "")
        try:
            if response.status_code >= 400:
                raw = await _read_bounded(response, _MAX_ERROR_BODY)
                message, _type, code = error_from_upstream(Dialect.CHAT, response.status_code, raw)
                raise classify_http_error(
                    status=response.status_code,
                    headers=response.headers,
                    message=message,
                    code=code,
                    default_cooldown=settings.DEFAULT_COOLDOWN_SECONDS,
                    request_id=request_id,
                )
            if not call.stream:
                raw = await _read_bounded(response, _MAX_BODY)
                await response.aclose()
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise UpstreamError(
                        status=502,
                        message="upstream returned a body that is not JSON",
                        retryable=True,
                        request_id=request_id,
                        code="upstream_bad_response",
                    ) from None
                if not isinstance(body, dict):
                    raise UpstreamError(
                        status=502,
                        message="upstream returned a JSON body that is not an object",
                        retryable=True,
                        request_id=request_id,
                        code="upstream_bad_response",
                    )
                return UpstreamResponse(dialect=Dialect.CHAT, request_id=request_id, body=body)
            return await self._open_stream(response, request_id)
        except httpx.HTTPError as exc:
            await response.aclose()
            raise classify_transport_error(exc) from None
        except BaseException:
            await response.aclose()
            raise

    async def _open_stream(self, response: httpx.Response, request_id: str) -> UpstreamResponse:
        ctype = response.headers.get("content-type", "")
        if "text/event-stream" not in ctype:
            raise UpstreamError(
                status=502,
                message=f"upstream answered a stream request with {ctype or 'no content type'}",
                retryable=True,
                request_id=request_id,
                code="upstream_bad_response",
            )
        events = _relay_events(response)
        first: list[SseEvent] = []
        # Handshake: wait for the first event so an error event can still fail over.
        try:
            ev = await anext(events)
        except StopAsyncIteration:
            raise UpstreamError(
                status=502,
                message="upstream stream ended before any event",
                retryable=True,
                request_id=request_id,
                code="upstream_empty_stream",
            ) from None
        except UpstreamStreamError as exc:
            raise UpstreamError(
                status=502, message=str(exc), retryable=True, request_id=request_id, code=exc.code
            ) from None
        if ev.data.startswith(b'{"error"'):
            message, _type, code = error_from_upstream(Dialect.CHAT, 500, ev.data)
            raise UpstreamError(
                status=502,
                message=message,
                retryable=True,
                request_id=request_id,
                code=code or "upstream_error",
                cooldown=5.0,
            )
        first.append(ev)

        async def chained() -> AsyncIterator[SseEvent]:
            for item in first:
                yield item
            async for item in events:
                yield item

        out = UpstreamResponse(dialect=Dialect.CHAT, request_id=request_id, events=chained())
        out._closers.append(events.aclose)
        out._closers.append(response.aclose)
        return out


async def _relay_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    parser = SseParser()
    try:
        async for chunk in response.aiter_bytes():
            for ev in parser.feed(chunk):
                if not _looks_like_event(ev):
                    raise UpstreamStreamError("upstream sent a malformed stream event", "upstream_malformed_stream")
                yield ev
        for ev in parser.flush():
            if not _looks_like_event(ev):
                raise UpstreamStreamError("upstream sent a malformed stream event", "upstream_malformed_stream")
            yield ev
    except UpstreamFormatError as exc:
        raise UpstreamStreamError(
            f"upstream sent a malformed stream ({exc.message})", "upstream_malformed_stream"
        ) from None
    except httpx.HTTPError as exc:
        raise UpstreamStreamError(f"upstream stream broke ({type(exc).__name__})", "upstream_stream_cut") from None


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            break
        chunks.append(chunk)
    return b"".join(chunks)


EXECUTOR = OpenAICompatExecutor()
