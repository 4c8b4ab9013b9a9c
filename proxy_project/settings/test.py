"""Test settings: the same environment-driven base, with fast hashing and quiet logs."""

import os

os.environ.setdefault("PROXY_VAR_DIR", str(__import__("pathlib").Path(__file__).resolve().parents[2] / "var" / "test"))

from proxy_project.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Each test run uses its own key prefix in a shared Redis.
STATE_KEY_PREFIX = f"llmproxy-test-{os.getpid()}:"
PROXY_VERSION_CHECK_SECONDS = 0.0
USAGE_FLUSH_INTERVAL_SECONDS = 0.2
LOGGING["root"] = {**LOGGING["root"], "level": os.environ.get("LOG_LEVEL", "WARNING")}  # type: ignore[dict-item]  # noqa: F405
CELERY_TASK_ALWAYS_EAGER = False
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# One test database per run, so parallel runs on one machine never share (or drop) each other's.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file (not :memory:) so the live proxy server thread sees the test's rows.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_llmproxy_{os.getpid()}"}  # noqa: F405

# The fakes and the live proxy run on 127.0.0.1.
PROXY_ALLOW_PRIVATE_UPSTREAMS = True
