from django.apps import AppConfig

from accounts.providers import provider_register


class OpenAICompatApp(AppConfig):
    name = "executors.openai_compat"
    label = "openai_compat"
    verbose_name = "OpenAI-compatible API"

    def ready(self) -> None:
        # Imported here, not at the top: a provider's models and executor can only load once
        # Django's app registry is ready.
        from executors.openai_compat.provider import PROVIDER

        provider_register(PROVIDER)
