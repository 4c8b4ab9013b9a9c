"""OpenAI-compatible upstream: an admin-configured base URL (ending in /v1) and an API key.

Chat Completions is the upstream dialect, except for models the catalog marks responses-only
(e.g. the gpt-5.5 family), which go to `{base}/responses` — always streamed upstream, and
assembled into one response object when the client did not stream. Streams are relayed event
by event as they arrive.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from django.conf import settings

from accounts.selectors import AccountInfo
from executors.base import UpstreamCall, UpstreamError, UpstreamResponse, UpstreamStreamError
from executors.errors import classify_http_error, classify_transport_error
from executors.http import http_client
from executors.streaming import open_event_stream, read_bounded
from formats import Dialect, SseEvent, error_from_upstream

__all__ = ["EXECUTOR", "OpenAICompatExecutor", "UpstreamStreamError"]

_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_RESPONSES_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
# A Responses stream opens with these; a failure right after them can still fail over.
_RESPONSES_HANDSHAKE = frozenset({"response.created", "response.in_progress"})


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


def _chat_first_error(ev: SseEvent) -> UpstreamError | None:
    if not ev.data.startswith(b'{"error"'):
        return None
    message, _type, code = error_from_upstream(Dialect.CHAT, 500, ev.data)
    return UpstreamError(status=502, message=message, retryable=True, code=code or "upstream_error", cooldown=5.0)


def _responses_first_error(ev: SseEvent) -> UpstreamError | None:
    if ev.event in ("error", "response.failed") or ev.data.startswith(b'{"type":"error"'):
        message, _type, code = error_from_upstream(Dialect.RESPONSES, 500, ev.data)
        return UpstreamError(status=502, message=message, retryable=True, code=code or "upstream_error", cooldown=5.0)
    return None


class OpenAICompatExecutor:
    provider = "openai_compat"

    async def refresh_credential(self, account: AccountInfo) -> bool:
        return False  # a static API key has nothing to refresh

    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        if call.facts.responses_only:
            return await self._open_responses(call)
        return await self._open_chat(call)

    async def _send(self, call: UpstreamCall, path: str, body: dict[str, Any], stream: bool) -> httpx.Response:
        client = http_client("openai_compat")
        request = client.build_request(
            "POST",
            f"{call.account.base_url}{path}",
            content=orjson.dumps(body),
            headers={
                "authorization": f"Bearer {call.account.secret.get('api_key', '')}",
                "content-type": "application/json",
                "accept": "text/event-stream" if stream else "application/json",
                # A compressed stream would be buffered by the compressor: ask for identity.
                **({"accept-encoding": "identity"} if stream else {}),
            },
        )
        try:
            response = await client.send(request, stream=True)
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
            message, _type, code = error_from_upstream(Dialect.CHAT, response.status_code, raw)
            raise classify_http_error(
                status=response.status_code,
                headers=response.headers,
                message=message,
                code=code,
                default_cooldown=settings.DEFAULT_COOLDOWN_SECONDS,
                request_id=response.headers.get("x-request-id", ""),
            )
        return response

    async def _open_chat(self, call: UpstreamCall) -> UpstreamResponse:
        response = await self._send(call, "/chat/completions", _chat_body(call), call.stream)
        request_id = response.headers.get("x-request-id", "")
        try:
            if call.stream:
                _require_sse(response, request_id)
                return await open_event_stream(
                    response, dialect=Dialect.CHAT, request_id=request_id, first_event_error=_chat_first_error
                )
            raw = await read_bounded(response, _MAX_BODY)
            await response.aclose()
            return UpstreamResponse(dialect=Dialect.CHAT, request_id=request_id, body=_json_object(raw, request_id))
        except httpx.HTTPError as exc:
            await response.aclose()
            raise classify_transport_error(exc) from None
        except BaseException:
            await response.aclose()
            raise

    async def _open_responses(self, call: UpstreamCall) -> UpstreamResponse:
        response = await self._send(call, "/responses", _responses_body(call), True)
        request_id = response.headers.get("x-request-id", "")
        try:
            if "application/json" in response.headers.get("content-type", ""):
                # Some servers answer a stream request with the bare response object.
                raw = await read_bounded(response, _MAX_BODY)
                await response.aclose()
                body = _json_object(raw, request_id)
                if call.stream:
                    raise UpstreamError(
                        status=502,
                        message="upstream answered a stream request with JSON",
                        retryable=True,
                        request_id=request_id,
                        code="upstream_bad_response",
                    )
                return UpstreamResponse(dialect=Dialect.RESPONSES, request_id=request_id, body=body)
            _require_sse(response, request_id)
            opened = await open_event_stream(
                response,
                dialect=Dialect.RESPONSES,
                request_id=request_id,
                first_event_error=_responses_first_error,
                handshake=_RESPONSES_HANDSHAKE,
            )
            if call.stream:
                return opened
            return await _assemble_response(opened, request_id)
        except httpx.HTTPError as exc:
            await response.aclose()
            raise classify_transport_error(exc) from None
        except BaseException:
            await response.aclose()
            raise


async def _assemble_response(opened: UpstreamResponse, request_id: str) -> UpstreamResponse:
    """A non-stream client on a streamed upstream call: the final response object, built from
    `response.completed` (its output rebuilt from `output_item.done` events when empty)."""
    assert opened.events is not None
    items: list[Any] = []
    final: dict[str, Any] | None = None
    try:
        async for ev in opened.events:
            obj = orjson.loads(ev.data)
            kind = obj.get("type")
            if kind == "response.output_item.done" and isinstance(obj.get("item"), dict):
                items.append(obj["item"])
            elif kind in _RESPONSES_TERMINAL:
                final = obj.get("response") if isinstance(obj.get("response"), dict) else None
                if kind == "response.failed":
                    raise UpstreamError(
                        status=502,
                        message=str((final or {}).get("error") or "upstream response failed"),
                        retryable=True,
                        request_id=request_id,
                        code="upstream_error",
                    )
                break
    except UpstreamStreamError as exc:
        raise UpstreamError(
            status=502, message=str(exc), retryable=True, request_id=request_id, code=exc.code
        ) from None
    finally:
        await opened.aclose()
    if final is None:
        raise UpstreamError(
            status=502,
            message="upstream stream ended before the response completed",
            retryable=True,
            request_id=request_id,
            code="upstream_stream_cut",
        )
    if not final.get("output"):
        final = {**final, "output": items}
    return UpstreamResponse(dialect=Dialect.RESPONSES, request_id=request_id, body=final)


def _require_sse(response: httpx.Response, request_id: str) -> None:
    ctype = response.headers.get("content-type", "")
    if "text/event-stream" not in ctype:
        raise UpstreamError(
            status=502,
            message=f"upstream answered a stream request with {ctype or 'no content type'}",
            retryable=True,
            request_id=request_id,
            code="upstream_bad_response",
        )


def _json_object(raw: bytes, request_id: str) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamError(
            status=502,
            message="upstream returned a body that is not a JSON object",
            retryable=True,
            request_id=request_id,
            code="upstream_bad_response",
        )
    return body


EXECUTOR = OpenAICompatExecutor()
