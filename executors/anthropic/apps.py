from executors import apps


class AnthropicApp(apps.ProviderApp):
    name = "executors.anthropic"
    label = "anthropic"
    verbose_name = "Anthropic API"
