import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")

app = Celery("proxy_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
# tasks.py of every installed app, providers' (executors/<name>/tasks.py) included.
app.autodiscover_tasks()
