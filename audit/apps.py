from django.apps import AppConfig

from observability.exposition import state_collector_register


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Usage audit"

    def ready(self) -> None:
        # Imported here: it reads models, which load only once the app registry is ready.
        from audit.metrics import buffer_families

        state_collector_register(buffer_families)
