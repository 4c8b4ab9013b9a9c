from django.apps import AppConfig

from accounts.providers import provider_register


class CodexApp(AppConfig):
    name = "executors.codex"
    label = "codex"
    verbose_name = "OpenAI Codex"

    def ready(self) -> None:
        # Imported here, not at the top: a provider's models and executor can only load once
        # Django's app registry is ready.
        from executors.codex.provider import PROVIDER

        provider_register(PROVIDER)
