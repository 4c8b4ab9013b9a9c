from executors import apps


class OpenAICompatApp(apps.ProviderApp):
    name = "executors.openai_compat"
    label = "openai_compat"
    verbose_name = "OpenAI-compatible API"
