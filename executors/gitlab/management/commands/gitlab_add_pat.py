"""Add (or re-key) a GitLab Duo account from a personal access token."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import secret_option
from accounts.services import DuplicateIdentity
from audit.services import cli_actor
from executors.gitlab.exceptions import GitLabError
from executors.gitlab.management.arguments import account_settings, add_account_settings
from executors.gitlab.services import gitlab_pat_add


class Command(BaseCommand):
    help = (
        "Validate a GitLab personal access token (scope api), probe GitLab Duo access by minting the "
        "third-party-agents gateway grant, and add the account. Failures name their cause."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--label", required=True)
        parser.add_argument("--token", default="", help="glpat-... (or set GITLAB_TOKEN; avoids shell history)")
        add_account_settings(parser)

    def handle(self, *args: object, **opts: object) -> None:
        token = secret_option(opts, "token", "GITLAB_TOKEN", "a token")
        try:
            account = gitlab_pat_add(
                token=token,
                **account_settings(opts),
                actor=cli_actor("gitlab_add_pat"),
            )
        except GitLabError as exc:
            raise CommandError(exc.message) from None
        except DuplicateIdentity as exc:
            raise CommandError(str(exc)) from None
        pat = (account.provider_config or {}).get("pat", {})
        self.stdout.write(
            f"GitLab account {account.id} '{account.label}' state={account.state}; token scopes "
            f"{', '.join(pat.get('scopes') or [])}, expires {pat.get('expires_at') or 'never'}"
        )
        if account.last_error:
            self.stdout.write(f"warning: {account.last_error}")
