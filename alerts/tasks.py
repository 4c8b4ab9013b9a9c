"""Celery tasks: thin wrappers that call services (see docs/architecture.md)."""

from celery import shared_task

from alerts.services import alerts_check


@shared_task(ignore_result=True)
def alerts_check_task() -> int:
    return alerts_check()
