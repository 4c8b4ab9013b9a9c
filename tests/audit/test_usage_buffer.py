"""The usage buffer: nothing written on the request path, batches later, nothing lost or doubled."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import UsageRecord
from audit.services import USAGE_BUFFER_KEY, UsageDraft, usage_flush, usage_record
from infra.db import db_call

pytestmark = pytest.mark.django_db(transaction=True)


async def _count() -> int:
    return await db_call(UsageRecord.objects.count)


async def test_record_goes_to_buffer_not_database(store: Any) -> None:
    await usage_record(UsageDraft(surface="chat", requested_model="m", outcome="ok"), store=store)
    assert await store.list_len(USAGE_BUFFER_KEY) == 1
    assert await _count() == 0
    assert await usage_flush(store=store) == 1
    assert await _count() == 1
    assert await store.list_len(USAGE_BUFFER_KEY) == 0


async def test_flush_in_batches_writes_everything(store: Any) -> None:
    for i in range(1234):
        await usage_record(UsageDraft(surface="chat", requested_model=f"m{i % 3}", input_tokens=i), store=store)
    assert await usage_flush(store=store, batch=100) == 1234
    assert await _count() == 1234
    total = await db_call(lambda: sum(UsageRecord.objects.values_list("input_tokens", flat=True)))
    assert total == sum(range(1234))


async def test_reflush_after_crash_does_not_duplicate(store: Any) -> None:
    drafts = [UsageDraft(surface="chat") for _ in range(5)]
    for d in drafts:
        await usage_record(d, store=store)
    # A flusher that inserted but died before trimming the buffer:
    raw = await store.list_range(USAGE_BUFFER_KEY, 10)
    from audit.services import _insert, _to_model

    await db_call(_insert, [r for r in map(_to_model, raw) if r is not None])
    # The next flush re-reads the same entries; unique request ids keep one row each.
    await usage_flush(store=store)
    assert await _count() == 5
    assert await store.list_len(USAGE_BUFFER_KEY) == 0


async def test_corrupt_entry_is_skipped_not_blocking(store: Any) -> None:
    await store.list_push(USAGE_BUFFER_KEY, b"not json")
    await usage_record(UsageDraft(surface="chat"), store=store)
    assert await usage_flush(store=store) == 1
    assert await store.list_len(USAGE_BUFFER_KEY) == 0


async def test_concurrent_flushers_do_not_double_write(store: Any) -> None:
    import asyncio

    for _ in range(300):
        await usage_record(UsageDraft(surface="chat"), store=store)
    results = await asyncio.gather(*(usage_flush(store=store, batch=50) for _ in range(4)))
    assert sum(results) == 300
    assert await _count() == 300


def test_celery_task_flushes(transactional_db: None) -> None:
    from audit.tasks import usage_flush_task
    from statestore.factory import call_sync

    call_sync(lambda s: usage_record(UsageDraft(surface="chat"), store=s))
    # Run through Celery's task machinery (apply = in-process execution of the real task).
    result = usage_flush_task.apply()
    assert result.get() == 1
    assert UsageRecord.objects.count() == 1


async def test_record_with_counters_settles_and_buffers(store: Any) -> None:
    # given a live counter (a key's limit charged at reservation)
    await store.incr("limit-counter", 50, ttl=60)
    # when the record carries the settlement
    await usage_record(UsageDraft(surface="chat", requested_model="m"), store=store, counters=[("limit-counter", -20)])
    # then both happened: the counter is settled and the record is buffered
    assert await store.get("limit-counter") == b"30"
    assert await store.list_len(USAGE_BUFFER_KEY) == 1


async def test_record_with_counters_is_kept_when_the_store_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    from audit import services
    from statestore import StoreUnavailable
    from statestore.memory import InProcessStore

    class Down(InProcessStore):
        async def counters_adjust_then_push(self, *a: Any, **kw: Any) -> None:
            raise StoreUnavailable("down")

    kept: list[bytes] = []
    monkeypatch.setattr(services, "_local_keep", kept.extend)
    monkeypatch.setattr(services, "_drainer_ensure", lambda: None)
    await usage_record(UsageDraft(surface="chat", requested_model="m"), store=Down(), counters=[("c", -1)])
    assert len(kept) == 1, "the record waits in the fallback buffer, as without a settlement"
