from django.apps import AppConfig


class CodexApp(AppConfig):
    name = "executors.codex"
    label = "codex"
    verbose_name = "OpenAI Codex"
