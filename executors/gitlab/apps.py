from django.apps import AppConfig

from accounts.providers import provider_register


class GitLabApp(AppConfig):
    name = "executors.gitlab"
    label = "gitlab"
    verbose_name = "GitLab Duo"

    def ready(self) -> None:
        # Imported here, not at the top: a provider's models and executor can only load once
        # Django's app registry is ready.
        from executors.gitlab.provider import PROVIDER

        provider_register(PROVIDER)
