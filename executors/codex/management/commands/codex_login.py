"""Sign a Codex (ChatGPT) account in: paste-callback PKCE or device code
(docs/protocols/codex.md#sign-in-chatgpt-oauth)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import add_allow_duplicate, add_login_mode
from accounts.services import DuplicateIdentity
from audit.services import cli_actor
from executors.codex import oauth
from executors.codex.config import DEFAULT_BASE_URL, DEFAULT_MODELS
from executors.codex.services import (
    CodexLoginError,
    codex_device_complete,
    codex_device_start,
    codex_pkce_complete,
    codex_pkce_start,
)


class Command(BaseCommand):
    help = (
        "Add (or re-login) a Codex account with ChatGPT sign-in. --pkce prints a URL; open it, sign in, "
        "then paste the address of the page that fails to load (http://localhost:1455/auth/callback?...). "
        "--device prints a code to enter at auth.openai.com/codex/device."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_login_mode(parser, pkce="paste-callback browser sign-in", device="device-code sign-in (headless)")
        parser.add_argument("--label", required=True)
        parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="Codex backend base URL")
        parser.add_argument("--auth-url", default="", help="auth server (default https://auth.openai.com)")
        parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
        parser.add_argument("--workspace-id", default="", help="force a ChatGPT workspace (PKCE only)")
        parser.add_argument("--account-id", default=None, help="pin the chatgpt_account_id")
        parser.add_argument("--callback", default=None, help="the pasted callback URL (else read from stdin)")
        parser.add_argument("--timeout", type=float, default=900.0, help="device-code approval timeout, seconds")
        add_allow_duplicate(parser, "ChatGPT account")

    def handle(self, *args: Any, **opts: Any) -> None:
        config = {"auth_url": opts["auth_url"]} if opts["auth_url"] else {}
        common = {
            "label": opts["label"],
            "base_url": opts["base_url"],
            "model_names": [m for m in str(opts["models"]).split(",") if m.strip()],
            "provider_config": config,
        }
        save = {"actor": cli_actor("codex_login"), "allow_duplicate": opts["allow_duplicate"]}
        try:
            if opts["pkce"]:
                start = codex_pkce_start(**common, workspace_id=opts["workspace_id"])
                self.stdout.write("Open this URL, sign in, then paste the full address of the page that fails to load:")
                self.stdout.write(start.url)
                self.stdout.flush()
                callback = opts["callback"] or sys.stdin.readline()
                if not callback.strip():
                    raise CommandError("no callback URL given")
                account = codex_pkce_complete(callback_url=callback, pin_account_id=opts["account_id"], **save)
            else:
                code = codex_device_start(**common)
                self.stdout.write(f"Open {code.verification_url} and enter the code: {code.user_code}")
                self.stdout.write("(valid for 15 minutes; waiting for approval...)")
                self.stdout.flush()
                account = codex_device_complete(
                    device_auth_id=code.device_auth_id,
                    timeout=opts["timeout"],
                    pin_account_id=opts["account_id"],
                    **save,
                )
        except (CodexLoginError, oauth.OAuthError, DuplicateIdentity) as exc:
            raise CommandError(str(exc)) from None
        secret = account.credential.secret
        self.stdout.write(
            f"signed in: account {account.id} '{account.label}' (ChatGPT {secret.get('email') or '?'}, "
            f"plan {secret.get('plan_type') or '?'}), installation id {account.installation_id}"
        )
