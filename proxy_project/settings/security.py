"""Security settings by environment (imported at the end of base.py).

Admin pages get the browser-side protections Django's SecurityMiddleware and clickjacking
middleware can give; TLS-only flags (HSTS, secure cookies) are enabled when the deployment
says it sits behind TLS, because setting them on plain HTTP would lock admins out.
"""

from __future__ import annotations

import os


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


# Upstream URLs on private/loopback/link-local networks (accounts/validators.py). Off by
# default: an admin-entered URL must not turn the proxy into a door to the internal network.
PROXY_ALLOW_PRIVATE_UPSTREAMS = _env_bool("PROXY_ALLOW_PRIVATE_UPSTREAMS", False)

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

PROXY_BEHIND_TLS = _env_bool("PROXY_BEHIND_TLS", False)
if PROXY_BEHIND_TLS:
    SECURE_HSTS_SECONDS = int(os.environ.get("PROXY_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = False  # other services on sibling hosts are not ours to pin
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # TLS ends at the reverse proxy; trust its scheme header only in this mode.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Admin login throttle (accounts/throttle.py, an authentication backend so the admin login
# view stays untouched): failures per username and per client address in a window.
ADMIN_LOGIN_MAX_FAILURES = int(os.environ.get("ADMIN_LOGIN_MAX_FAILURES", "5"))
ADMIN_LOGIN_WINDOW_SECONDS = float(os.environ.get("ADMIN_LOGIN_WINDOW_SECONDS", "900"))

AUTHENTICATION_BACKENDS = ["accounts.throttle.ThrottledModelBackend"]
