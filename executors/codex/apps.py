from executors import apps


class CodexApp(apps.ProviderApp):
    name = "executors.codex"
    label = "codex"
    verbose_name = "OpenAI Codex"
