from django.apps import AppConfig


class PortalConfig(AppConfig):
    """Developer self-service: a developer's own keys and usage, nothing else."""

    name = "portal"
    verbose_name = "Developer self-service"
