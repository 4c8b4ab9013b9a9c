"""The base of every provider's Django app: registers the provider when Django is ready.

Providers subclass it through the module (`from executors import apps`, then
`class MyApp(apps.ProviderApp)`): Django picks an app's config as the one AppConfig class
defined in its apps.py, so the base must not be imported there by name."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig

from accounts.providers import provider_register


class ProviderApp(AppConfig):
    """A provider app (`executors/<name>/`): its `provider.PROVIDER` joins the registry.

    Imported in ready(), not at module level: a provider's models and executor can only load
    once Django's app registry is ready."""

    def ready(self) -> None:
        provider_register(import_module(f"{self.name}.provider").PROVIDER)
