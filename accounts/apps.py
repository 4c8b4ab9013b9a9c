from django.apps import AppConfig

from observability.exposition import state_collector_register


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and keys"

    def ready(self) -> None:
        # Imported here: it reads models, which load only once the app registry is ready.
        from accounts.metrics import account_families

        state_collector_register(account_families)
