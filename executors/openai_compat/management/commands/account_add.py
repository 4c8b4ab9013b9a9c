from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import add_rotation, rotation, secret_option
from audit.services import cli_actor
from executors.openai_compat.services import account_add_openai_compat


class Command(BaseCommand):
    help = "Add an upstream account. Providers: openai_compat (an OpenAI-compatible base URL + API key)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", default="openai_compat", choices=["openai_compat"])
        parser.add_argument("--label", required=True)
        parser.add_argument("--base-url", required=True, help="e.g. https://api.openai.com/v1")
        parser.add_argument("--api-key", help="the upstream API key (or set UPSTREAM_API_KEY)")
        parser.add_argument("--models", required=True, help="comma-separated model names this account serves")
        add_rotation(parser)

    def handle(self, *args: object, **opts: object) -> None:
        api_key = secret_option(opts, "api_key", "UPSTREAM_API_KEY", "an API key")
        try:
            account = account_add_openai_compat(
                label=str(opts["label"]),
                base_url=str(opts["base_url"]),
                api_key=api_key,
                model_names=str(opts["models"]).split(","),
                **rotation(opts),
                actor=cli_actor("account_add"),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"added account {account.id} '{account.label}' serving {', '.join(account.model_names)}")
