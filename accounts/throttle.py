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

from statestore.factory import call_sync

log = logging.getLogger(__name__)


def _keys(request: Any, username: str | None) -> list[str]:
    # Hashed, so neither usernames nor addresses sit in the store in clear text.
    user = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]
    addr = str(getattr(request, "META", {}).get("REMOTE_ADDR", "") or "")
    return [f"login:fail:u:{user}", f"login:fail:a:{hashlib.sha256(addr.encode()).hexdigest()[:32]}"]


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kw: Any) -> Any:
        keys = _keys(request, username)
        limit = settings.ADMIN_LOGIN_MAX_FAILURES
        try:
            counts = call_sync(lambda store: store.get_many(keys))
        except Exception:
            log.exception("login throttle store unavailable: not throttling (fail open)")
            counts = [None, None]
        if any(c is not None and int(c) >= limit for c in counts):
            log.warning("admin login throttled")
            raise PermissionDenied("too many failed logins; try again later")
        user = super().authenticate(request, username=username, password=password, **kw)
        window = settings.ADMIN_LOGIN_WINDOW_SECONDS

        async def record(store: Any) -> None:
            if user is None:
                for key in keys:
                    await store.incr(key, ttl=window)
            else:
                await store.delete(keys[0])  # success clears the username's count, not the address's

        try:
            call_sync(record)
        except Exception:
            log.exception("login throttle store unavailable: attempt not counted")
        return user
