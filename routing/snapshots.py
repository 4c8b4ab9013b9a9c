"""Responses snapshots: what makes `previous_response_id` work on any upstream.

The proxy never relies on an upstream's own conversation store (the next turn may be served
by another account or provider): it keeps the whole conversation per response id, scoped to
the client key, and expands a continuation into a full stateless request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DataError
from django.utils import timezone

from audit.cleaning import json_clean, text_clean
from infra.db import db_call
from routing.errors import ErrorCode, ProxyError
from routing.models import ResponseSnapshot

_MAX_META_BYTES = 16 * 1024


def _input_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return list(value) if isinstance(value, list) else []


def _clean_meta(meta: Any) -> dict[str, Any]:
    """Provider metadata is opaque here, but must be a small JSON object to be kept."""
    if not isinstance(meta, dict):
        return {}
    try:
        if len(orjson.dumps(meta)) > _MAX_META_BYTES:
            return {}
    except TypeError:
        return {}
    return meta


async def snapshot_expand(*, key_id: int, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int | None]:
    """Replace `previous_response_id` with the stored conversation.

    Returns the stateless body, the provider metadata of the previous answer and the account
    that served it (the continuation prefers it).
    Unknown (or another key's) id -> OpenAI's 400 `previous_response_not_found`.
    """
    previous = body.get("previous_response_id")
    if not previous:
        return body, {}, None
    snap = await db_call(
        lambda: ResponseSnapshot.objects.filter(
            response_id=previous, client_key_id=key_id, expires_at__gt=timezone.now()
        ).first()
    )
    if snap is None:
        raise ProxyError(
            400,
            ErrorCode.PREVIOUS_RESPONSE_NOT_FOUND,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
        )
    expanded = {k: v for k, v in body.items() if k != "previous_response_id"}
    expanded["input"] = [*snap.items, *_input_items(body.get("input"))]
    return expanded, _clean_meta(snap.provider_meta), snap.account_id


def _as_input_item(item: dict[str, Any]) -> dict[str, Any]:
    # Output items are valid input items once their output-only fields are dropped.
    return {k: v for k, v in item.items() if k not in ("status",)} if isinstance(item, dict) else item


def input_items(value: Any) -> list[Any]:
    """A Responses `input` (string or list) as a list of items."""
    return _input_items(value)


def conversation_items(request_body: dict[str, Any], response: dict[str, Any]) -> list[Any]:
    """The whole conversation after `response`: the request's input, then the answer's output
    as input items. A continuation of `response` is these items plus its own input."""
    output = [_as_input_item(i) for i in response.get("output") or [] if isinstance(i, dict)]
    return [*_input_items(request_body.get("input")), *output]


async def snapshot_save(
    *,
    key_id: int,
    account_id: int | None,
    request_body: dict[str, Any],
    response: dict[str, Any],
    provider_meta: dict[str, Any],
) -> None:
    """Keep the conversation after this answer (skipped when the client asked store=false)."""
    if request_body.get("store") is False:
        return
    response_id = response.get("id")
    if not isinstance(response_id, str) or not response_id:
        return
    items = conversation_items(request_body, response)
    instructions = request_body.get("instructions")
    expires = timezone.now() + timedelta(hours=settings.SNAPSHOT_RETENTION_HOURS)

    def write(items: list[Any], instructions: str) -> None:
        ResponseSnapshot.objects.update_or_create(
            response_id=response_id[:100],
            client_key_id=key_id,
            defaults={
                "account_id": account_id,
                "model": text_clean(response.get("model") or request_body.get("model") or "", 200),
                "instructions": instructions,
                "items": items,
                "provider_meta": _clean_meta(provider_meta),
                "expires_at": expires,
            },
        )

    text = instructions if isinstance(instructions, str) else ""
    try:
        await db_call(write, items, text)
    except DataError:
        # PostgreSQL's jsonb and text refuse NUL characters, which a client may send in its
        # input: keep the conversation without them rather than lose it (the answer is out).
        await db_call(write, json_clean(items, max_depth=None), text_clean(text))


def snapshot_cleanup() -> int:
    """Delete expired snapshots (Celery beat, daily)."""
    deleted, _ = ResponseSnapshot.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
