from django.apps import AppConfig


class OpenAICompatApp(AppConfig):
    name = "executors.openai_compat"
    label = "openai_compat"
    verbose_name = "OpenAI-compatible API"
