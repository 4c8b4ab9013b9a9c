"""Usage records: pushed to a buffer on the request path, written in batches off it.

The request path never writes the database. Records go to a list in the state store; a
flusher (Celery beat with Redis, an in-process task in the embedded default) writes them in
batches. Rows are read before they are dropped from the buffer and inserted idempotently
(unique request_id), so a crash between the two loses nothing and duplicates nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings

from audit.models import AdminAction, Outcome, UsageRecord
from proxy_project.db import db_call
from statestore import LockNotAcquired, StateStore, get_store

log = logging.getLogger(__name__)

USAGE_BUFFER_KEY = "usage:buffer"
_FLUSH_LOCK = "usage:flush"


@dataclass(slots=True)
class UsageDraft:
    """Everything known about one request, filled in as it progresses."""

    surface: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=lambda: datetime.now(UTC).timestamp())
    client_key_id: int | None = None
    key_prefix: str = ""
    account_id: int | None = None
    account_label: str = ""
    requested_model: str = ""
    served_model: str = ""
    stream: bool = False
    outcome: str = Outcome.OK
    status_code: int = 200
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    ttfb_ms: int | None = None
    duration_ms: int = 0
    attempts: int = 0
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    upstream_request_id: str = ""
    error_code: str = ""
    error_message: str = ""


async def usage_record(draft: UsageDraft, *, store: StateStore | None = None) -> None:
    """Hand one finished record to the buffer (one RPUSH; no database on the request path)."""
    # orjson serialises the dataclass natively (no asdict copy).
    await (store or get_store()).list_push(USAGE_BUFFER_KEY, orjson.dumps(draft))


def _to_model(raw: bytes) -> UsageRecord | None:
    try:
        data = orjson.loads(raw)
        data["created_at"] = datetime.fromtimestamp(data["created_at"], tz=UTC)
        data["error_message"] = (data.get("error_message") or "")[:500]
        return UsageRecord(**data)
    except Exception:  # a corrupt entry must not block the buffer forever
        log.exception("dropping unreadable usage buffer entry")
        return None


def _insert(rows: list[UsageRecord]) -> None:
    UsageRecord.objects.bulk_create(rows, ignore_conflicts=True)


async def usage_flush(*, store: StateStore | None = None, batch: int | None = None) -> int:
    """Write buffered records to the database; returns how many were written."""
    store = store or get_store()
    size = batch or settings.USAGE_FLUSH_BATCH
    written = 0
    try:
        async with store.lock(_FLUSH_LOCK, ttl=60):
            while True:
                raw = await store.list_range(USAGE_BUFFER_KEY, size)
                if not raw:
                    break
                rows = [r for r in map(_to_model, raw) if r is not None]
                if rows:
                    await db_call(_insert, rows)
                await store.list_drop(USAGE_BUFFER_KEY, len(raw))
                written += len(rows)
    except LockNotAcquired:
        return 0  # another flusher is on it
    return written


async def usage_buffer_depth() -> int:
    return await get_store().list_len(USAGE_BUFFER_KEY)


# --------------------------------------------------------------------------- admin action log

# Field names that hold secrets anywhere in the project (exact names: "tokens_per_day" is fine).
_SECRET_FIELDS = frozenset({"secret", "api_key", "key_hash", "password", "token", "access_token", "refresh_token"})


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def admin_action_log(
    *,
    actor: Any | None,
    action: str,
    target_type: str,
    target_id: int | None,
    target_label: str = "",
    changes: dict[str, Any] | None = None,
) -> AdminAction:
    """Record who changed what (old -> new). Call inside the changing service's transaction.

    Secret-looking fields are refused loudly rather than masked quietly: a caller that passes
    one has a bug, and a masked value in an audit log still hints that it was handled there.
    """
    clean: dict[str, Any] = {}
    for name, value in (changes or {}).items():
        if name.lower() in _SECRET_FIELDS:
            raise ValueError(f"refusing to write field {name!r} to the audit log")
        clean[name] = _json_safe(value)
    user = actor if getattr(actor, "pk", None) is not None else None
    return AdminAction.objects.create(
        actor=user,
        actor_label=(getattr(user, "get_username", lambda: "")() if user else "") or "system",
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label[:200],
        changes=clean,
    )


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields whose value changed."""
    return {k: [_json_safe(before.get(k)), _json_safe(v)] for k, v in after.items() if before.get(k) != v}
