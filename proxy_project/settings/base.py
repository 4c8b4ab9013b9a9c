"""Base settings: everything comes from the environment, with embedded defaults.

A fresh machine needs nothing set: SQLite under var/, an in-process state store and a
filesystem Celery broker. DATABASE_URL / REDIS_URL / CELERY_BROKER_URL switch to the
real services.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from proxy_project.settings.secrets import (
    generate_django_secret,
    generate_fernet_key,
    secret_from_env_or_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("PROXY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


SECRET_KEY = secret_from_env_or_file("DJANGO_SECRET_KEY", VAR_DIR, generate_django_secret)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "routing",
    "audit",
    "pricing",
    "alerts",
    "portal",
    # Providers: everything one upstream kind is lives in its executors/<name>/ app.
    "executors.openai_compat",
    "executors.gitlab",
    "executors.codex",
    "executors.anthropic",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "proxy_project.urls"
ASGI_APPLICATION = "proxy_project.asgi.application"
# The API is routed on the path only; never redirect /v1/models -> /v1/models/.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Site-wide admin look (admin/base_site.html), ahead of django.contrib.admin's own.
        "DIRS": [BASE_DIR / "proxy_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'proxy.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web and Celery processes share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Proxy ------------------------------------------------------------------------------
# Empty REDIS_URL = the in-process state store (single web process only).
REDIS_URL = os.environ.get("REDIS_URL", "")
# Namespace for every state-store key (several deployments may share one Redis).
STATE_KEY_PREFIX = os.environ.get("STATE_KEY_PREFIX", "llmproxy:")

# Upstream credentials: MultiFernet keys, newest first (comma-separated). Older keys stay
# readable until `manage.py credentials_rotate` re-encrypts under the first one.
CREDENTIAL_KEYS = [
    k.strip()
    for k in secret_from_env_or_file("PROXY_CREDENTIAL_KEYS", VAR_DIR, generate_fernet_key).split(",")
    if k.strip()
]

PROXY_MAX_BODY_BYTES = env_int("PROXY_MAX_BODY_BYTES", 32 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PROXY_MAX_BODY_BYTES
# Bodies larger than this are parsed, validated and translated in a worker thread, not on the
# event loop (routing/intake.py); smaller ones cost less than the thread hop.
PROXY_INLINE_BODY_BYTES = env_int("PROXY_INLINE_BODY_BYTES", 128 * 1024)
# Hot-path caches: how long a process trusts its copy of keys/accounts before re-checking
# the shared version counter.
PROXY_CACHE_TTL_SECONDS = env_float("PROXY_CACHE_TTL_SECONDS", 30.0)
PROXY_VERSION_CHECK_SECONDS = env_float("PROXY_VERSION_CHECK_SECONDS", 1.0)

UPSTREAM_TIMEOUTS = {
    "connect": env_float("UPSTREAM_CONNECT_TIMEOUT", 10.0),
    # Long reasoning models may think for minutes between events.
    "read": env_float("UPSTREAM_READ_TIMEOUT", 600.0),
    "write": env_float("UPSTREAM_WRITE_TIMEOUT", 60.0),
    "pool": env_float("UPSTREAM_POOL_TIMEOUT", 10.0),
}
# Per upstream kind and web worker (one aiohttp pool each, executors/http.py).
UPSTREAM_MAX_CONNECTIONS = env_int("UPSTREAM_MAX_CONNECTIONS", 1000)
# Failover bounds for one client request.
DISPATCH_MAX_ATTEMPTS = env_int("DISPATCH_MAX_ATTEMPTS", 3)
# Cooldown after a retryable upstream failure with no Retry-After hint.
DEFAULT_COOLDOWN_SECONDS = env_float("DEFAULT_COOLDOWN_SECONDS", 30.0)
# Escalating backoff for limits without a reset hint: base * 2^n, capped.
COOLDOWN_BACKOFF_BASE_SECONDS = env_float("COOLDOWN_BACKOFF_BASE_SECONDS", 5.0)
COOLDOWN_BACKOFF_CAP_SECONDS = env_float("COOLDOWN_BACKOFF_CAP_SECONDS", 1800.0)
# Total time one client request may spend trying accounts before the first byte.
DISPATCH_DEADLINE_SECONDS = env_float("DISPATCH_DEADLINE_SECONDS", 120.0)
# How long a conversation stays bound to the account that served it.
AFFINITY_TTL_SECONDS = env_float("AFFINITY_TTL_SECONDS", 3600.0)

# Client WebSockets on /v1/responses (docs/protocols/responses-websocket.md): the lifetime cap
# the real service documents (60 min, then `websocket_connection_limit_reached`), and how
# long a socket past it may sit idle before it is closed.
WS_MAX_AGE_SECONDS = env_float("WS_MAX_AGE_SECONDS", 3600.0)
WS_IDLE_GRACE_SECONDS = env_float("WS_IDLE_GRACE_SECONDS", 300.0)

# How long `previous_response_id` can refer to a stored Responses answer.
SNAPSHOT_RETENTION_HOURS = env_int("SNAPSHOT_RETENTION_HOURS", 24 * 7)

USAGE_FLUSH_BATCH = env_int("USAGE_FLUSH_BATCH", 500)
USAGE_FLUSH_INTERVAL_SECONDS = env_float("USAGE_FLUSH_INTERVAL_SECONDS", 1.0)

# Observability (docs/observability.md). Unset token = no /metrics endpoint at all (404).
PROXY_METRICS_TOKEN = os.environ.get("PROXY_METRICS_TOKEN", "")

# LOG_FORMAT=plain (default, for humans) | json (one object per line; recommended in
# production). Both carry the request id; both redact secret-looking tokens.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "proxy_project.logging.JsonFormatter"},
    },
    "filters": {
        "request_id": {"()": "proxy_project.logging.RequestIdFilter"},
        "redact": {"()": "proxy_project.logging.RedactSecretsFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

from proxy_project.settings.celery import *  # noqa: E402,F403
from proxy_project.settings.security import *  # noqa: E402,F403

# Alerts (alerts/): where they go besides the channels set in the admin. A Slack-compatible
# webhook URL and/or comma-separated email addresses (sent through Django's mail backend:
# EMAIL_HOST / EMAIL_PORT / EMAIL_HOST_USER / EMAIL_HOST_PASSWORD / EMAIL_USE_TLS,
# DEFAULT_FROM_EMAIL, read from the environment below).
PROXY_ALERT_WEBHOOK_URL = os.environ.get("PROXY_ALERT_WEBHOOK_URL", "")
PROXY_ALERT_EMAILS = os.environ.get("PROXY_ALERT_EMAILS", "")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "llm-proxy@localhost")
