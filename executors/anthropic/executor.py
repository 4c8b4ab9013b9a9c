"""Anthropic API upstream: `{base}/v1/messages` with an API key (docs/protocols/anthropic.md).

Messages clients pass through: their body goes up with only the model name set, their
`anthropic-version` and `anthropic-beta` headers are forwarded, and the answer (JSON or SSE
events, thinking signatures and usage included) comes back as sent. Chat Completions and
Responses clients are translated by `formats` (UpstreamCall.body_for) and their answers by the
relay. Streams are relayed as they arrive; their start is read through executors.streaming so
an `overloaded_error` before any content still fails over.

Every answer's rate-limit headers become a quota reading (ratelimits.py); failures are
classified by the table in errors.py. Nothing here retries: dispatch does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from accounts.selectors import AccountInfo
from executors.anthropic import ANTHROPIC_VERSION, KIND
from executors.anthropic.errors import classify_reply, classify_stream_event
from executors.anthropic.ratelimits import readings_record
from executors.base import UpstreamCall, UpstreamError, UpstreamResponse
from executors.errors import bad_response, classify_transport_error, closing_on_error
from executors.http import http_post
from executors.streaming import open_stream, read_bounded, relay_events
from formats import Dialect, SseEvent
from statestore import get_store

__all__ = ["EXECUTOR", "AnthropicExecutor"]

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
# Client headers that choose the API's behaviour and go up unchanged.
_FORWARDED = ("anthropic-beta",)
# The fields count_tokens takes (its API reference); sampling fields and max_tokens are refused.
COUNT_TOKENS_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})


def upstream_headers(account: AccountInfo, client_headers: Mapping[str, str], *, stream: bool) -> dict[str, str]:
    """The request headers: the account's key, the client's version and betas, nothing else of
    the client's (its own credentials never leave the proxy)."""
    headers = {
        "x-api-key": str(account.secret.get("api_key", "")),
        "anthropic-version": client_headers.get("anthropic-version") or ANTHROPIC_VERSION,
        "content-type": "application/json",
        "accept": "text/event-stream" if stream else "application/json",
    }
    for name in _FORWARDED:
        if client_headers.get(name):
            headers[name] = client_headers[name]
    if stream:
        headers["accept-encoding"] = "identity"  # a compressor would buffer the stream
    return headers


def messages_body(call: UpstreamCall) -> dict[str, Any]:
    body = call.body_for(Dialect.MESSAGES)
    if call.stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


async def upstream_post(
    call: UpstreamCall, path: str, body: dict[str, Any], *, stream: bool
) -> tuple[httpx.Response, str]:
    """POST `{base}{path}`; a non-2xx answer is recorded and raised as a classified error."""
    headers = upstream_headers(call.account, call.client_headers, stream=stream)
    try:
        response = await http_post(KIND, f"{call.account.base_url}{path}", content=orjson.dumps(body), headers=headers)
    except httpx.HTTPError as exc:
        raise classify_transport_error(exc) from None
    request_id = response.headers.get("request-id", "")
    await _record_limits(call, response.headers)
    # Anything but 2xx is an error (redirects are never followed, nor passed off as a 200).
    if not 200 <= response.status_code < 300:
        raise classify_reply(response.status_code, await _error_body(response), response.headers, request_id)
    return response, request_id


async def _error_body(response: httpx.Response) -> bytes:
    """The error reply's body (bounded); the connection is released either way."""
    try:
        return await read_bounded(response, _MAX_ERROR_BODY)
    except httpx.HTTPError:
        return b""  # cut short: the status alone says what happened
    finally:
        await response.aclose()


async def _record_limits(call: UpstreamCall, headers: Mapping[str, str]) -> None:
    try:
        await readings_record(get_store(), account_id=call.account.id, model=call.upstream_model, headers=headers)
    except Exception:  # quota hints must never fail a request
        log.warning("anthropic: could not record rate-limit headers", exc_info=True)


async def json_body(response: httpx.Response, request_id: str) -> dict[str, Any]:
    raw = await read_bounded(response, _MAX_BODY)
    await response.aclose()
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.loads(raw)
        if isinstance(body, dict):
            return body
    raise bad_response("Anthropic API returned a body that is not a JSON object", request_id)


class AnthropicExecutor:
    provider = KIND
    billing = "metered"

    async def refresh_credential(self, account: AccountInfo) -> bool:
        return False  # a static API key has nothing to refresh

    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        response, request_id = await upstream_post(call, "/v1/messages", messages_body(call), stream=call.stream)
        async with closing_on_error(response.aclose):
            if not call.stream:
                body = await json_body(response, request_id)
                return UpstreamResponse(dialect=Dialect.MESSAGES, request_id=request_id, body=body)
            ctype = response.headers.get("content-type", "")
            if "text/event-stream" not in ctype:
                raise bad_response(f"Anthropic API answered a stream with {ctype or 'no content type'}", request_id)

            async def error_of(ev: SseEvent) -> UpstreamError:
                return classify_stream_event(ev.data, request_id)

            return await open_stream(
                relay_events(response, source="Anthropic API"),
                dialect=Dialect.MESSAGES,
                request_id=request_id,
                error_of=error_of,
                closers=(response.aclose,),
            )

    async def count_tokens(self, call: UpstreamCall) -> int:
        """`/v1/messages/count_tokens`: the upstream's exact count of a Messages request."""
        body = {k: v for k, v in call.body_for(Dialect.MESSAGES).items() if k in COUNT_TOKENS_FIELDS}
        response, request_id = await upstream_post(call, "/v1/messages/count_tokens", body, stream=False)
        async with closing_on_error(response.aclose):
            answer = await json_body(response, request_id)
        tokens = answer.get("input_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise bad_response("Anthropic API count_tokens answered without input_tokens", request_id)
        return tokens


EXECUTOR = AnthropicExecutor()
