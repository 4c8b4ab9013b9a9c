"""Client surfaces. Thin: read the request, call routing.proxy, write the response."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI

from formats import Dialect
from routing.auth import client_authenticate
from routing.catalog import catalog_models
from routing.errors import ProxyError, internal_error
from routing.proxy import Reply, compact_handle, count_tokens_handle, proxy_handle

# No /v1/docs or /v1/openapi.json (issue 17): the request and response bodies are the OpenAI and
# Anthropic formats, documented by them; ninja's page documented nothing more, loaded Swagger from
# a CDN (third-party script on the proxy's origin; broken offline) and needed no key.
api = NinjaAPI(title="Team LLM proxy", version="1", urls_namespace="proxy_api", docs_url=None, openapi_url=None)


class SseResponse(StreamingHttpResponse):
    """A stream whose parts are finished bytes: `ApiHandler` sends them one ASGI message each,
    without Django's per-part wrapping (two generator layers, byte coercion, chunking). Any
    other server path still iterates it as a plain StreamingHttpResponse."""

    def __init__(self, parts: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        super().__init__(parts, **kwargs)
        self.parts = parts


def _to_response(reply: Reply) -> HttpResponse | StreamingHttpResponse:
    if reply.stream is None:
        return HttpResponse(reply.body, status=reply.status, headers=reply.headers)
    response = SseResponse(reply.stream, status=reply.status, headers=reply.headers)
    if reply.abandon is not None:
        # Django runs these when it drops the response, also if it never iterated the stream.
        response._resource_closers.append(reply.abandon)  # type: ignore[attr-defined]
    return response


def _read_body(request: HttpRequest) -> tuple[bytes, bool]:
    try:
        return request.body, False
    except RequestDataTooBig:
        return b"", True


async def _serve(dialect: Dialect, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    raw, too_large = _read_body(request)
    reply = await proxy_handle(dialect=dialect, headers=request.headers, raw_body=raw, body_too_large=too_large)
    return _to_response(reply)


@api.post("/chat/completions", include_in_schema=True, summary="OpenAI Chat Completions")
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _serve(Dialect.CHAT, request)


@api.post("/responses", summary="OpenAI Responses")
async def responses(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _serve(Dialect.RESPONSES, request)


@api.post("/responses/compact", summary="OpenAI Responses compaction")
async def responses_compact(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    raw, too_large = _read_body(request)
    reply = await compact_handle(headers=request.headers, raw_body=raw, body_too_large=too_large)
    return _to_response(reply)


@api.get("/responses", include_in_schema=False)
async def responses_upgrade(request: HttpRequest) -> HttpResponse:
    # A server without a WebSocket library hands upgrade requests over as plain GETs.
    upgrade = request.headers.get("upgrade", "").lower() == "websocket"
    error = (
        ProxyError(426, "websocket_not_supported", "WebSocket transport is not implemented; use POST /v1/responses")
        if upgrade
        else ProxyError(405, "method_not_allowed", "use POST /v1/responses")
    )
    status, headers, body = error.render(Dialect.RESPONSES)
    return HttpResponse(body, status=status, headers=headers)


@api.post("/messages", summary="Anthropic Messages")
async def messages(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _serve(Dialect.MESSAGES, request)


@api.post("/messages/count_tokens", summary="Anthropic token counting (local, no upstream call)")
async def messages_count_tokens(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    raw, too_large = _read_body(request)
    reply = await count_tokens_handle(headers=request.headers, raw_body=raw, body_too_large=too_large)
    return _to_response(reply)


def _models_dialect(request: HttpRequest) -> Dialect:
    return Dialect.MESSAGES if "anthropic-version" in request.headers else Dialect.CHAT


def _error_dialect(request: HttpRequest) -> Dialect:
    # Anthropic's surface answers in Anthropic's format even when a client omits the header.
    return Dialect.MESSAGES if request.path.startswith("/v1/messages") else _models_dialect(request)


@api.get("/models", summary="List the models the calling key may use")
async def models(request: HttpRequest) -> HttpResponse:
    dialect = _models_dialect(request)
    try:
        key = await client_authenticate(request.headers)
    except ProxyError as exc:
        status, headers, body = exc.render(dialect)
        return HttpResponse(body, status=status, headers=headers)
    names = [name for name in await catalog_models() if key.allows(name)]
    if dialect is Dialect.MESSAGES:
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"} for name in names
        ]
        payload: dict[str, object] = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    else:
        created = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
        payload = {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": created, "owned_by": "team-proxy"} for name in names],
        }
    return HttpResponse(orjson.dumps(payload), headers={"content-type": "application/json"})


@csrf_exempt
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    dialect = _error_dialect(request)
    status, headers, body = ProxyError(404, "not_found", f"no route for {request.method} /v1/{path}").render(dialect)
    return HttpResponse(body, status=status, headers=headers)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Last resort: a bug must still answer in the client's dialect, without internals.
    # (internal_error logs the traceback; a database outage is a 503, not a 500.)
    status, headers, body = internal_error(exc).render(_error_dialect(request))
    return HttpResponse(body, status=status, headers=headers)
