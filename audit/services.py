"""Usage records: pushed to a buffer on the request path, written in batches off it.

The request path never writes the database. Records go to a list in the state store; a
flusher (Celery beat with Redis, an in-process task in the embedded default) writes them in
batches. Rows are read before they are dropped from the buffer and inserted idempotently
(unique request_id), so a crash between the two loses nothing and duplicates nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import orjson
from django.conf import settings

from audit.models import Outcome, UsageRecord
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
    upstream_request_id: str = ""
    error_code: str = ""
    error_message: str = ""


async def usage_record(draft: UsageDraft, *, store: StateStore | None = None) -> None:
    """Hand one finished record to the buffer (one RPUSH; no database on the request path)."""
    await (store or get_store()).list_push(USAGE_BUFFER_KEY, orjson.dumps(asdict(draft)))


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
