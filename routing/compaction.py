"""Context compaction as routing sees it (docs/protocols/compaction.md): which requests ask for
it, and the answer the client gets once an account served it.

An account whose executor has `native_compaction` (it compacts upstream) answers with the
upstream's own compaction; for any other, dispatch opened the proxy's summarising turn
(`formats.compaction.summarise_request`, built in `UpstreamCall.body_for`) and its text is
wrapped here into the proxy's compaction item. Routing only asks the executor's flag; it never
names a provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from executors.base import UpstreamResponse
from executors.registry import executor_for
from formats import Dialect, SseEvent, UpstreamFormatError, decode_response
from formats.compaction import endpoint_response, has_trigger, response_events, response_text, trigger_response
from routing.dispatch import Opened

TRIGGER = "trigger"
ENDPOINT = "endpoint"
ENDPOINT_SURFACE = "responses.compact"


def compaction_kind(dialect: Dialect, body: dict[str, Any], *, endpoint: bool) -> str | None:
    if endpoint:
        return ENDPOINT
    return TRIGGER if dialect is Dialect.RESPONSES and has_trigger(body) else None


def compaction_native(opened: Opened) -> bool:
    executor = executor_for(opened.account.provider)
    return bool(getattr(executor, "native_compaction", False))


def compaction_final(opened: Opened, kind: str, canonical: dict[str, Any], model: str) -> dict[str, Any]:
    """The client's answer object: the upstream's own (native) or the proxy's compaction
    wrapped around the summarising turn's text. Raises UpstreamFormatError when there is none."""
    response = opened.response
    body = response.body or {}
    if compaction_native(opened):
        if kind == TRIGGER and not any(
            isinstance(i, dict) and i.get("type") == "compaction" for i in body.get("output") or []
        ):
            raise UpstreamFormatError("output", "the compaction turn returned no compaction item")
        return body
    answer = body if response.dialect is Dialect.RESPONSES else decode_response(response.dialect, body)
    summary = response_text(answer)
    if not summary:
        raise UpstreamFormatError("output", "the summarising turn returned no text")
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
    if kind == TRIGGER:
        return trigger_response(summary, model=model, usage=usage)
    return endpoint_response(canonical, summary, usage=usage)


def compaction_response(opened: Opened, final: dict[str, Any], *, stream: bool) -> UpstreamResponse:
    """`final` as an upstream answer in the Responses dialect, whole or as its events, so the
    ordinary reply paths (SSE, WebSocket frames, JSON) deliver it."""
    response = opened.response
    if not stream:
        return UpstreamResponse(
            dialect=Dialect.RESPONSES,
            request_id=response.request_id,
            body=final,
            headers=response.headers,
            provider_meta=response.provider_meta,
        )

    async def events() -> AsyncIterator[SseEvent]:
        for name, obj in response_events(final):
            yield SseEvent(event=name, data=orjson.dumps(obj))

    return UpstreamResponse(
        dialect=Dialect.RESPONSES,
        request_id=response.request_id,
        events=events(),
        headers=response.headers,
        provider_meta=response.provider_meta,
    )
