from celery import shared_task

from audit.services import usage_flush
from statestore.factory import call_sync


@shared_task(ignore_result=True)
def usage_flush_task() -> int:
    return call_sync(lambda store: usage_flush(store=store))
