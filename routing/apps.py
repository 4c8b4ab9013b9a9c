from django.apps import AppConfig
from django.conf import settings

from observability.metrics import known_models_source


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # Imported here: the catalog reads models, which load only once the app registry is ready.
        from accounts.selectors import cache_generation
        from routing.catalog import catalog_models

        # Request metrics label models by catalog name ("other" for anything else).
        known_models_source(catalog_models, generation=cache_generation, ttl=settings.PROXY_CACHE_TTL_SECONDS)
