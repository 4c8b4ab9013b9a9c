"""Admin login throttling: an authentication backend that refuses further attempts for a
username or a client address after ADMIN_LOGIN_MAX_FAILURES failures in the window.

Counters live in the state store (shared by every web process with Redis). Store down: fail
open (logged) — the password is still required, and locking every admin out during a Redis
outage would block the very person who has to fix it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from statestore import CounterLimit
from statestore.factory import call_sync

log = logging.getLogger(__name__)


def _keys(request: Any, username: str | None) -> list[str]:
    # Hashed, so neither usernames nor addresses sit in the store in clear text.
    user = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]
    addr = str(getattr(request, "META", {}).get("REMOTE_ADDR", "") or "")
    return [f"login:fail:u:{user}", f"login:fail:a:{hashlib.sha256(addr.encode()).hexdigest()[:32]}"]


class ThrottledModelBackend(ModelBackend):
    """Check and count in one atomic step (issue 17 F8: a separate read then increment let 40
    concurrent wrong passwords all be checked against a limit of 5).

    Every attempt first reserves one unit on both counters (the username's and the address's)
    with the store's all-or-nothing `counters_reserve`; only an attempt that got its reservation
    reaches the password check. A failure keeps the unit; a success gives it back and clears
    the username's count. So at most ADMIN_LOGIN_MAX_FAILURES passwords are ever checked per
    username or address in a window, however many arrive at once.
    """

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kw: Any) -> Any:
        keys = _keys(request, username)
        limit = settings.ADMIN_LOGIN_MAX_FAILURES
        window = settings.ADMIN_LOGIN_WINDOW_SECONDS
        reservation = [CounterLimit(key, 1, limit, window) for key in keys]
        try:
            over = call_sync(lambda store: store.counters_reserve(reservation)).over
            counted = True
        except Exception:
            log.exception("login throttle store unavailable: not throttling (fail open)")
            over, counted = None, False
        if over is not None:
            log.warning("admin login throttled")
            raise PermissionDenied("too many failed logins; try again later")
        user = super().authenticate(request, username=username, password=password, **kw)
        if user is not None and counted:

            async def give_back(store: Any) -> None:
                await store.counters_adjust([(keys[1], -1)])
                await store.delete(keys[0])  # success clears the username's count, not the address's

            try:
                call_sync(give_back)
            except Exception:
                log.exception("login throttle store unavailable: successful attempt still counted")
        return user
