"""Add (or re-login) a GitLab Duo account with OAuth: device grant or authorization code + PKCE."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import add_login_mode
from accounts.models import UpstreamAccount
from accounts.services import DuplicateIdentity
from audit.services import cli_actor
from executors.gitlab.config import DEFAULT_SCOPES
from executors.gitlab.exceptions import GitLabError, LoginPending
from executors.gitlab.management.arguments import account_settings, add_account_settings
from executors.gitlab.services import (
    gitlab_oauth_device_poll,
    gitlab_oauth_device_start,
    gitlab_oauth_pkce_finish,
    gitlab_oauth_pkce_start,
)


class Command(BaseCommand):
    help = (
        "Log a GitLab account in through an admin-registered OAuth application (scopes: api read_user). "
        "--device shows a code to approve in a browser; --pkce prints a URL and reads back the redirected URL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_login_mode(
            parser,
            pkce="authorization code + PKCE, paste the callback URL",
            device="device authorization grant (GitLab 17.3+)",
        )
        parser.add_argument("--label", required=True, help="account label (an existing GitLab label is re-logged in)")
        parser.add_argument("--client-id", required=True, help="the OAuth application's id on this instance")
        parser.add_argument("--client-secret", default="", help="only for a confidential application")
        parser.add_argument(
            "--redirect-uri",
            default="http://localhost:17171/auth/callback",
            help="--pkce: the redirect URI registered on the application",
        )
        parser.add_argument("--scopes", default=DEFAULT_SCOPES)
        parser.add_argument("--root-namespace-id", default="", help="--pkce: group SAML SSO namespace")
        parser.add_argument("--callback", default="", help="--pkce: the redirected URL (else asked interactively)")
        add_account_settings(parser)

    def handle(self, *args: object, **opts: object) -> None:
        common = {
            "client_id": str(opts["client_id"]),
            "client_secret": str(opts["client_secret"] or ""),
            "scopes": str(opts["scopes"]),
            **account_settings(opts),
        }
        try:
            account = self._device(common) if opts["device"] else self._pkce(common, opts)
        except GitLabError as exc:
            raise CommandError(exc.message) from None
        except DuplicateIdentity as exc:
            raise CommandError(str(exc)) from None
        self._report(account)

    def _device(self, common: dict[str, object]) -> UpstreamAccount:
        start = gitlab_oauth_device_start(**common)  # type: ignore[arg-type]
        self.stdout.write(f"Open {start.verification_uri} and enter the code {start.user_code}")
        self.stdout.write(f"  (or open {start.verification_uri_complete})", ending="\n")
        self.stdout.flush()
        deadline = time.monotonic() + start.expires_in
        interval = start.interval
        while time.monotonic() < deadline:
            time.sleep(interval)
            try:
                return gitlab_oauth_device_poll(flow_id=start.flow_id, actor=cli_actor("gitlab_login"))
            except LoginPending as pending:
                interval = pending.interval
        raise CommandError("the device code expired before it was approved; run the command again")

    def _pkce(self, common: dict[str, object], opts: dict[str, object]) -> UpstreamAccount:
        start = gitlab_oauth_pkce_start(
            **common,  # type: ignore[arg-type]
            redirect_uri=str(opts["redirect_uri"]),
            root_namespace_id=str(opts["root_namespace_id"] or ""),
        )
        self.stdout.write("Open this URL, approve, then paste the URL your browser was redirected to:")
        self.stdout.write(start.authorize_url)
        self.stdout.flush()
        callback = str(opts["callback"] or "") or input("callback URL or code: ")
        return gitlab_oauth_pkce_finish(callback=callback, flow_id=start.flow_id, actor=cli_actor("gitlab_login"))

    def _report(self, account: UpstreamAccount) -> None:
        user = (account.provider_config or {}).get("user", {}).get("username", "?")
        self.stdout.write(
            f"GitLab account {account.id} '{account.label}' ({user}) state={account.state}; "
            f"serves {len(account.model_names)} models incl. gitlab-duo"
        )
        if account.last_error:
            self.stdout.write(f"warning: {account.last_error}")
