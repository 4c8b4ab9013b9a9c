"""OpenAI-compatible upstream: an admin-configured base URL (ending in /v1) and an API key.

Chat Completions is the upstream dialect, except for models the catalog marks responses-only
(e.g. the gpt-5.5 family), which go to `{base}/responses` — always streamed upstream, and
assembled into one response object when the client did not stream. Streams are relayed event
by event as they arrive. Failures are classified by the generic HTTP table (executors.errors).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from accounts.selectors import AccountInfo
from executors.base import UpstreamCall, UpstreamError, UpstreamResponse
from executors.errors import (
    HTTP_TABLE,
    Rule,
    Signal,
    anything,
    bad_response,
    classify,
    classify_transport_error,
    closing_on_error,
    http_signal,
    seconds,
)
from executors.http import http_post
from executors.streaming import assemble_response, open_stream, read_bounded, relay_events
from formats import Dialect, SseEvent, error_from_upstream

__all__ = ["EXECUTOR", "OpenAICompatExecutor"]

_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
# An error event before any content: fail over, a short cooldown for (account, family).
_STREAM_TABLE = (Rule(anything, cooldown=seconds(5.0), client_status=502),)


def _chat_body(call: UpstreamCall) -> dict[str, Any]:
    body = call.body_for(Dialect.CHAT)
    if call.stream:
        # Always ask for usage on streams so every request is accounted for; the relay hides
        # the extra chunk from clients that did not ask for it.
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    return body


def _responses_body(call: UpstreamCall) -> dict[str, Any]:
    body = call.body_for(Dialect.RESPONSES)
    body.pop("stream_options", None)
    body["stream"] = True
    return body


def _stream_error_of(dialect: Dialect, request_id: str) -> Any:
    async def error_of(ev: SseEvent) -> UpstreamError:
        message, _type, code = error_from_upstream(dialect, 500, ev.data)
        return classify(_STREAM_TABLE, Signal(status=502, message=message, code=code or "", request_id=request_id))

    return error_of


class OpenAICompatExecutor:
    provider = "openai_compat"
    billing = "metered"

    async def refresh_credential(self, account: AccountInfo) -> bool:
        return False  # a static API key has nothing to refresh

    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        if call.facts.responses_only:
            return await self._open_responses(call)
        return await self._open_chat(call)

    async def _send(self, call: UpstreamCall, path: str, body: dict[str, Any], stream: bool) -> httpx.Response:
        headers = {
            "authorization": f"Bearer {call.account.secret.get('api_key', '')}",
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            # A compressed stream would be buffered by the compressor: ask for identity.
            **({"accept-encoding": "identity"} if stream else {}),
        }
        try:
            response = await http_post(
                "openai_compat", f"{call.account.base_url}{path}", content=orjson.dumps(body), headers=headers
            )
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from None
        # Anything but 2xx is an error: a 3xx (redirects are never followed) must not be
        # relayed to the client as a 200 with the redirect page as its body.
        if not 200 <= response.status_code < 300:
            try:
                raw = await read_bounded(response, _MAX_ERROR_BODY)
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            request_id = response.headers.get("x-request-id", "")
            raise classify(HTTP_TABLE, http_signal(response.status_code, raw, response.headers, request_id))
        return response

    async def _open_chat(self, call: UpstreamCall) -> UpstreamResponse:
        response = await self._send(call, "/chat/completions", _chat_body(call), call.stream)
        request_id = response.headers.get("x-request-id", "")
        async with closing_on_error(response.aclose):
            if call.stream:
                _require_sse(response, request_id)
                return await open_stream(
                    relay_events(response),
                    dialect=Dialect.CHAT,
                    request_id=request_id,
                    error_of=_stream_error_of(Dialect.CHAT, request_id),
                    closers=(response.aclose,),
                )
            raw = await read_bounded(response, _MAX_BODY)
            await response.aclose()
            return UpstreamResponse(dialect=Dialect.CHAT, request_id=request_id, body=_json_object(raw, request_id))

    async def _open_responses(self, call: UpstreamCall) -> UpstreamResponse:
        response = await self._send(call, "/responses", _responses_body(call), True)
        request_id = response.headers.get("x-request-id", "")
        async with closing_on_error(response.aclose):
            if "application/json" in response.headers.get("content-type", ""):
                # Some servers answer a stream request with the bare response object.
                raw = await read_bounded(response, _MAX_BODY)
                await response.aclose()
                body = _json_object(raw, request_id)
                if call.stream:
                    raise bad_response("upstream answered a stream request with JSON", request_id)
                return UpstreamResponse(dialect=Dialect.RESPONSES, request_id=request_id, body=body)
            _require_sse(response, request_id)
            error_of = _stream_error_of(Dialect.RESPONSES, request_id)
            opened = await open_stream(
                relay_events(response),
                dialect=Dialect.RESPONSES,
                request_id=request_id,
                error_of=error_of,
                closers=(response.aclose,),
            )
            if call.stream:
                return opened
            return await assemble_response(opened, error_of)


def _require_sse(response: httpx.Response, request_id: str) -> None:
    ctype = response.headers.get("content-type", "")
    if "text/event-stream" not in ctype:
        raise bad_response(f"upstream answered a stream request with {ctype or 'no content type'}", request_id)


def _json_object(raw: bytes, request_id: str) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise bad_response("upstream returned a body that is not a JSON object", request_id)
    return body


EXECUTOR = OpenAICompatExecutor()
