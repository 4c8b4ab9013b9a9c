import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")

app = Celery("proxy_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Provider login/refresh tasks live beside their services (accounts/<provider>/tasks.py).
app.autodiscover_tasks(["accounts.gitlab", "accounts.codex"])
