"""Usage records: pushed to a buffer on the request path, written in batches off it.

The request path never writes the database. Records go to a list in the state store; a
flusher (Celery beat with Redis, an in-process task in the embedded default) writes them in
batches. Rows are read before they are dropped from the buffer and inserted idempotently
(unique request_id), so a crash between the two loses nothing and duplicates nothing.

State store down: a record that cannot be pushed goes to a bounded in-process fallback buffer
(`_local`) and a background drainer on the same event loop retries it: back into the shared
buffer once the store answers, or straight into the database (idempotent insert) while it does
not. The request never fails because of accounting; only a crash of the process while the
store is down loses what that process held (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, transaction

from audit.cleaning import text_clean, usage_draft_clean, usage_row_clean
from audit.models import AdminAction, Outcome, UsageDeadLetter, UsageRecord
from infra.db import db_call
from observability.metrics import usage_dead_letters_count
from statestore import LockNotAcquired, StateStore, StoreUnavailable, get_store

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
    # Set on the request path only when a money budget needed the real cost; otherwise the
    # flusher prices the record (pricing.selectors.usage_rows_price).
    cost_nanousd: int | None = None
    price_source: str = ""


# In-process fallback while the shared store is unreachable. Bounded so an outage that outlasts
# it cannot exhaust memory: past the bound the oldest entries are dropped and counted (loudly).
LOCAL_BUFFER_MAX = 100_000
_LOCAL_DRAIN_INTERVAL = 0.5
_local: deque[bytes] = deque()
_local_dropped = 0
_drainers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def usage_local_depth() -> tuple[int, int]:
    """(records held in this process's fallback buffer, records dropped because it was full)."""
    return len(_local), _local_dropped


def _local_keep(entries: list[bytes]) -> None:
    global _local_dropped
    _local.extend(entries)
    while len(_local) > LOCAL_BUFFER_MAX:
        _local.popleft()
        _local_dropped += 1
        if _local_dropped % 1000 == 1:
            log.error("usage fallback buffer full: %d records dropped so far", _local_dropped)


async def usage_record(
    draft: UsageDraft, *, store: StateStore | None = None, counters: Sequence[tuple[str, int]] = ()
) -> None:
    """Hand one finished record to the buffer (one RPUSH; no database on the request path).

    `counters`: changes to apply first in the same round trip (`counters_adjust`), e.g. the
    request's limits settlement: one Redis call per request instead of two."""
    # Cleaned here, where the record is complete: nothing the client or upstream put into it
    # can make the database refuse it later (audit/cleaning.py). Then orjson serialises the
    # dataclass natively (no asdict copy).
    usage_draft_clean(draft)
    raw = orjson.dumps(draft)
    try:
        store = store or get_store()
        if counters:
            try:
                await store.counters_adjust_then_push(counters, USAGE_BUFFER_KEY, raw)
                return
            except StoreUnavailable:
                raise
            except Exception:  # e.g. a script error: the settlement is lost (logged), not the record
                log.exception("could not settle limits with usage record %s", draft.request_id)
        await store.list_push(USAGE_BUFFER_KEY, raw)
    except StoreUnavailable:
        if counters:  # as a failed settlement alone: the charges stay in place
            log.exception("could not settle limits with usage record %s", draft.request_id)
        # Fail open: the answer was served; keep the record here until it can be written.
        _local_keep([raw])
        _drainer_ensure()


def _drainer_ensure() -> None:
    loop = asyncio.get_running_loop()
    task = _drainers.get(loop)
    if task is None or task.done():
        _drainers[loop] = loop.create_task(_local_drain_forever())


async def _local_drain_forever() -> None:
    while _local:
        await asyncio.sleep(_LOCAL_DRAIN_INTERVAL)
        try:
            await usage_local_drain()
        except Exception:  # keep the records and try again; never let the drainer die loudly
            log.exception("usage fallback drain failed; will retry")


async def usage_local_drain(*, store: StateStore | None = None, batch: int = 1000) -> int:
    """Move this process's fallback records on: to the shared buffer if the store is back,
    else directly into the database. Returns how many left the fallback buffer."""
    moved = 0
    while _local:
        chunk: list[bytes] = []
        while _local and len(chunk) < batch:
            chunk.append(_local.popleft())
        try:
            try:
                await (store or get_store()).list_push(USAGE_BUFFER_KEY, *chunk)
            except StoreUnavailable:
                await db_call(usage_rows_write, chunk)  # idempotent by request_id, like the flusher
        except BaseException:
            _local.extendleft(reversed(chunk))  # back in front, order kept; nothing lost
            raise
        moved += len(chunk)
    return moved


# Errors that belong to one row (bad value, constraint): set that row aside. Anything else
# (database down, connection lost) keeps the whole batch in the buffer for the next flush.
_ROW_ERRORS = (DataError, IntegrityError, ValidationError, ValueError, TypeError, OverflowError)
_FIELDS = frozenset(f.attname for f in UsageRecord._meta.concrete_fields) - {"id"}
DEAD_PAYLOAD_MAX = 65_536


def _to_model(raw: bytes) -> UsageRecord:
    """Decode and clean one buffer entry; raises one of _ROW_ERRORS if it is unusable."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"unreadable buffer entry: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("buffer entry is not an object")
    data = {k: v for k, v in data.items() if k in _FIELDS}
    data["request_id"] = uuid.UUID(str(data.get("request_id")))
    data["created_at"] = datetime.fromtimestamp(float(data["created_at"]), tz=UTC)
    return UsageRecord(**usage_row_clean(data))


def _insert(rows: list[UsageRecord]) -> None:
    _price(rows)
    UsageRecord.objects.bulk_create(rows, ignore_conflicts=True)


def _price(rows: list[UsageRecord]) -> None:
    """Cost in money, set here (off the request path) for records not priced on it."""
    # Imported on first use: the price data is only loaded where records are written.
    from pricing.selectors import usage_rows_price

    try:
        usage_rows_price(rows)
    except (OperationalError, InterfaceError):
        raise  # the database is unreachable: the insert would fail too; the batch stays buffered
    except Exception:  # a price problem must never hold up the records: they stay unpriced
        log.exception("could not price %d usage records; written without a cost", len(rows))


def _dead_letter(raw: bytes, exc: BaseException) -> UsageDeadLetter:
    text = raw[:DEAD_PAYLOAD_MAX].decode("utf-8", "replace").replace("\x00", "\\u0000")
    try:
        request_id = str(orjson.loads(raw).get("request_id", ""))[:64]
    except Exception:
        request_id = ""
    reason = text_clean(f"{type(exc).__name__}: {exc}", 500)
    log.error("usage record %s set aside (dead letter): %s", request_id or "?", reason)
    return UsageDeadLetter(request_id=text_clean(request_id, 64), error=reason, payload=text_clean(text))


def usage_rows_write(entries: list[bytes]) -> int:
    """Write buffer entries (sync; run through db_call). Returns how many became records.

    One statement for the batch; if the database refuses it, row by row, and each row it
    still refuses goes to UsageDeadLetter, so one bad record never blocks the others.
    Database unavailable: raises, and the caller keeps the entries buffered.
    """
    rows: list[tuple[bytes, UsageRecord]] = []
    dead: list[UsageDeadLetter] = []
    for raw in entries:
        try:
            rows.append((raw, _to_model(raw)))
        except (*_ROW_ERRORS, KeyError) as exc:
            dead.append(_dead_letter(raw, exc))
    try:
        _insert([row for _, row in rows])
        written = len(rows)
    except _ROW_ERRORS:
        written = 0
        for raw, row in rows:
            try:
                with transaction.atomic():
                    _insert([row])
                written += 1
            except _ROW_ERRORS as exc:
                dead.append(_dead_letter(raw, exc))
    if dead:
        UsageDeadLetter.objects.bulk_create(dead)
        usage_dead_letters_count(len(dead))
    return written


async def usage_flush(*, store: StateStore | None = None, batch: int | None = None) -> int:
    """Write buffered records to the database; returns how many were written."""
    store = store or get_store()
    size = batch or settings.USAGE_FLUSH_BATCH
    written = 0
    if _local:
        # Records this process held while the store was down go first (to the store or DB).
        await usage_local_drain(store=store)
    try:
        async with store.lock(_FLUSH_LOCK, ttl=60):
            while True:
                raw = await store.list_range(USAGE_BUFFER_KEY, size)
                if not raw:
                    break
                written += await db_call(usage_rows_write, raw)
                await store.list_drop(USAGE_BUFFER_KEY, len(raw))
    except LockNotAcquired:
        return 0  # another flusher is on it
    except StoreUnavailable:
        log.warning("usage flush skipped: state store unavailable (records stay buffered)")
        return written
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
    actor: Any | str | None,
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
    user: Any = actor if getattr(actor, "pk", None) is not None else None
    # A string names a non-user actor (a management command and its OS user: cli_actor()).
    label = actor if isinstance(actor, str) else (getattr(user, "get_username", lambda: "")() if user else "")
    return AdminAction.objects.create(
        actor=user,
        actor_label=(label or "system")[:150],
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label[:200],
        changes=clean,
    )


def cli_actor(command: str) -> str:
    """The action log's actor for a management command: the command and who ran it."""
    import getpass

    try:
        who = getpass.getuser()
    except Exception:  # no login name (some containers)
        who = "unknown user"
    return f"manage.py {command} ({who})"


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields whose value changed."""
    return {k: [_json_safe(before.get(k)), _json_safe(v)] for k, v in after.items() if before.get(k) != v}


def _fields_of(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: _json_safe(getattr(obj, f)) for f in fields}


def model_save_logged(
    obj: Any, *, fields: tuple[str, ...], target_type: str, actor: Any | None = None, on_commit: Any = None
) -> Any:
    """Save a small settings row (a price override, a budget, an alert channel) and log
    `<target_type>_create` / `_update` with the changed `fields`, in one transaction."""
    from django.db import transaction

    before = _fields_of(type(obj).objects.get(pk=obj.pk), fields) if obj.pk else {}
    with transaction.atomic():
        created = obj.pk is None
        obj.save()
        admin_action_log(
            actor=actor,
            action=f"{target_type}_create" if created else f"{target_type}_update",
            target_type=target_type,
            target_id=obj.pk,
            target_label=str(obj),
            changes=changes_between(before, _fields_of(obj, fields)),
        )
        if on_commit is not None:
            transaction.on_commit(on_commit)
    return obj


def model_delete_logged(
    obj: Any, *, fields: tuple[str, ...], target_type: str, actor: Any | None = None, on_commit: Any = None
) -> None:
    """Delete such a row and log `<target_type>_delete` with what it held."""
    from django.db import transaction

    with transaction.atomic():
        admin_action_log(
            actor=actor,
            action=f"{target_type}_delete",
            target_type=target_type,
            target_id=obj.pk,
            target_label=str(obj),
            changes=changes_between(_fields_of(obj, fields), dict.fromkeys(fields)),
        )
        obj.delete()
        if on_commit is not None:
            transaction.on_commit(on_commit)
