"""Running the usage flush on a timer: its outage-aware logging, and the embedded-mode loop.

With Redis the buffer is shared and Celery beat flushes it (audit.tasks); the in-process
buffer is invisible to the Celery worker, so in the embedded default the web process runs
`usage_flush_forever` instead. Both go through `usage_flush_logged`.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError

from audit.services import usage_flush
from statestore import StateStore

log = logging.getLogger(__name__)


class _Outage:
    """Whether this process's last flush found the database down (log once per outage)."""

    since_failures = 0


_outage = _Outage()


async def usage_flush_logged(*, store: StateStore | None = None) -> int:
    """One flush. A database outage is logged once when it starts and once when it ends,
    not as a traceback every interval: the records stay buffered meanwhile, nothing is lost."""
    try:
        written = await usage_flush(store=store)
    except (OperationalError, InterfaceError) as exc:
        _outage.since_failures += 1
        if _outage.since_failures == 1:
            log.warning("usage flush: database unavailable, records stay buffered until it is back (%s)", exc)
        return 0
    if _outage.since_failures:
        log.warning(
            "usage flush: database back after %d failed flushes; %d buffered records written",
            _outage.since_failures,
            written,
        )
        _outage.since_failures = 0
    return written


async def usage_flush_forever() -> None:
    while True:
        await asyncio.sleep(settings.USAGE_FLUSH_INTERVAL_SECONDS)
        try:
            await usage_flush_logged()
        except Exception:  # keep flushing later; the buffer keeps the records meanwhile
            log.exception("usage flush failed; will retry")
