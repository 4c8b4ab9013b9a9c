"""Embedded mode only: the web process flushes its own in-process usage buffer.

With Redis the buffer is shared and Celery beat flushes it; the in-process buffer is
invisible to the Celery worker, so the web process runs this loop instead.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from audit.services import usage_flush

log = logging.getLogger(__name__)


async def usage_flush_forever() -> None:
    while True:
        await asyncio.sleep(settings.USAGE_FLUSH_INTERVAL_SECONDS)
        try:
            await usage_flush()
        except Exception:  # keep flushing later; the buffer keeps the records meanwhile
            log.exception("usage flush failed; will retry")
