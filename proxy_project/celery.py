import os
from typing import Any

from celery import Celery

from accounts.providers import providers_all

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")

app = Celery("proxy_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
# tasks.py of every installed app, providers' (executors/<name>/tasks.py) included.
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _provider_periodic_tasks(sender: Celery, **_: Any) -> None:
    """Each registered provider's periodic tasks join the settings' schedule (beat reads it later)."""
    for provider in providers_all():
        for name, entry in provider.periodic_tasks.items():
            sender.conf.beat_schedule.setdefault(name, dict(entry))
