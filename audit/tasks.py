"""Celery tasks: thin wrappers that call services (see docs/architecture.md)."""

from celery import shared_task

from audit.flusher import usage_flush_logged
from audit.rollups import rollups_update
from statestore.factory import call_sync


@shared_task(ignore_result=True)
def usage_flush_task() -> int:
    return call_sync(lambda store: usage_flush_logged(store=store))


@shared_task(ignore_result=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=3)
def rollups_update_task() -> int:
    # Bounded per run (at most 20 x 50k rows, and no new range after 40 s) to stay inside the
    # global 60 s soft time limit; the next beat continues from the watermark.
    return rollups_update(batch=50_000, max_batches=20, max_seconds=40)
