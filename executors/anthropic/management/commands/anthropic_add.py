from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import add_rotation, rotation, secret_option
from accounts.flows.base import FlowError
from accounts.validators import upstream_url_validate
from audit.services import cli_actor
from executors.anthropic import DEFAULT_BASE_URL, base_url_normalize
from executors.anthropic.flows import models_discover
from executors.anthropic.services import account_add_anthropic


class Command(BaseCommand):
    help = "Add an Anthropic API account: an API key for api.anthropic.com or an Anthropic-compatible server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--label", required=True)
        parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"default {DEFAULT_BASE_URL}")
        parser.add_argument("--api-key", help="the API key (or set ANTHROPIC_API_KEY, kept out of shell history)")
        parser.add_argument("--models", help="comma-separated; default: every model the key lists (GET /v1/models)")
        add_rotation(parser)

    def handle(self, *args: object, **opts: object) -> None:
        key = secret_option(opts, "api_key", "ANTHROPIC_API_KEY", "an API key")
        try:
            # The SSRF guard before the key is sent anywhere (discovery contacts the URL).
            base = base_url_normalize(upstream_url_validate(str(opts["base_url"])))
            names = str(opts["models"]).split(",") if opts["models"] else models_discover(base, key)
            account = account_add_anthropic(
                label=str(opts["label"]), base_url=base, api_key=key, model_names=names,
                actor=cli_actor("anthropic_add"), **rotation(opts),
            )  # fmt: skip
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except FlowError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"added Anthropic account {account.id} '{account.label}': {', '.join(account.model_names)}")
