from celery import shared_task

from routing.snapshots import snapshot_cleanup


@shared_task(ignore_result=True)
def snapshot_cleanup_task() -> int:
    return snapshot_cleanup()
