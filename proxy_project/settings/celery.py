"""Celery: Redis broker when REDIS_URL (or CELERY_BROKER_URL) is set, else kombu's
filesystem transport under var/ so the embedded default needs no server."""

from __future__ import annotations

import os
from pathlib import Path

_VAR_DIR = Path(os.environ.get("PROXY_VAR_DIR", Path(__file__).resolve().parents[2] / "var"))
_broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL", "")

if _broker:
    CELERY_BROKER_URL = _broker
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
else:
    _queue = _VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_queue / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue / "queue"),
        "data_folder_out": str(_queue / "queue"),
        "processed_folder": str(_queue / "processed"),
        "store_processed": False,
        # Without this kombu writes its broadcast exchange files into the working directory.
        "control_folder": str(_queue / "control"),
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BEAT_SCHEDULE_FILENAME = str(_VAR_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# The product's own periodic tasks; each provider adds its own (accounts.providers, merged by
# proxy_project/celery.py).
CELERY_BEAT_SCHEDULE = {
    "usage-flush": {"task": "audit.tasks.usage_flush_task", "schedule": 2.0},
    # Incremental (watermark on id) and idempotent; dashboards lag raw records by <= 1 min.
    "usage-rollups": {"task": "audit.tasks.rollups_update_task", "schedule": 60.0},
    "snapshot-cleanup": {"task": "routing.tasks.snapshot_cleanup_task", "schedule": 3600.0},
    # Account health, budgets, quota windows: one alert per change of state.
    "alerts-check": {"task": "alerts.tasks.alerts_check_task", "schedule": 60.0},
}
