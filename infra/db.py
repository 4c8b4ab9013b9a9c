"""Database access from async code outside Django's request cycle.

Django recycles connections at request boundaries; background flushes and cache loads run in
executor threads that never see one, so they recycle explicitly (honouring CONN_MAX_AGE and
health checks) to survive a database restart and not hoard connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")


def _recycled(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def db_call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await sync_to_async(_recycled, thread_sensitive=False)(fn, *args, **kwargs)
