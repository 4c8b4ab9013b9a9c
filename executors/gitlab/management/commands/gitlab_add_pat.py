"""Add (or re-key) a GitLab Duo account from a personal access token."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import DuplicateIdentity
from audit.services import cli_actor
from executors.gitlab.config import DEFAULT_GATEWAY_URL, DEFAULT_INSTANCE_URL
from executors.gitlab.exceptions import GitLabError
from executors.gitlab.services import gitlab_pat_add


class Command(BaseCommand):
    help = (
        "Validate a GitLab personal access token (scope api), probe GitLab Duo access by minting the "
        "third-party-agents gateway grant, and add the account. Failures name their cause."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--label", required=True)
        parser.add_argument("--token", default="", help="glpat-... (or set GITLAB_TOKEN; avoids shell history)")
        parser.add_argument("--instance-url", default=DEFAULT_INSTANCE_URL)
        parser.add_argument("--gateway-url", default=DEFAULT_GATEWAY_URL, help="AI gateway base URL")
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument("--weight", type=int, default=1)
        parser.add_argument(
            "--keep-without-duo",
            action="store_true",
            help="save the account (state not_entitled) even if the Duo probe fails",
        )
        parser.add_argument(
            "--allow-duplicate", action="store_true", help="add it even if this GitLab user is already an account"
        )

    def handle(self, *args: object, **opts: object) -> None:
        token = str(opts["token"] or os.environ.get("GITLAB_TOKEN", ""))
        if not token:
            raise CommandError("a token is required: --token or GITLAB_TOKEN")
        try:
            account = gitlab_pat_add(
                label=str(opts["label"]),
                token=token,
                instance_url=str(opts["instance_url"]),
                gateway_url=str(opts["gateway_url"]),
                priority=int(opts["priority"]),  # type: ignore[call-overload]
                weight=int(opts["weight"]),  # type: ignore[call-overload]
                keep_without_duo=bool(opts["keep_without_duo"]),
                allow_duplicate=bool(opts["allow_duplicate"]),
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
