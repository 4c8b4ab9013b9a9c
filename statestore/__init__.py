"""One async interface for cross-request state (cooldowns, limits, locks, buffers, versions).

Two implementations share one contract and one test suite: Redis for real deployments
(shared by every web and Celery process) and an in-process store for the embedded default.
"""

from statestore.base import CounterLimit, LockNotAcquired, Reserved, StateStore, StoreUnavailable, held_key
from statestore.factory import get_store, reset_stores

__all__ = [
    "CounterLimit",
    "LockNotAcquired",
    "Reserved",
    "StateStore",
    "StoreUnavailable",
    "get_store",
    "held_key",
    "reset_stores",
]
