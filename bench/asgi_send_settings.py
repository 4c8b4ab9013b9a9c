"""Product settings with the bench's stream route as the URLconf (bench/asgi_send_app.py)."""

from proxy_project.settings.base import *  # noqa: F403

ROOT_URLCONF = "bench.asgi_send_app"
