"""Import a Codex CLI auth.json (or a compatible export) as a Codex account
(docs/protocols/codex.md#importing-authjson)."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import DuplicateIdentity
from audit.services import cli_actor
from executors.codex.config import DEFAULT_BASE_URL, DEFAULT_MODELS
from executors.codex.services import CodexLoginError, codex_import_auth_json


class Command(BaseCommand):
    help = (
        "Import $CODEX_HOME/auth.json. Stop using it in the CLI afterwards: refresh tokens rotate, "
        "and whichever side refreshes first logs the other out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", required=True, help="path to auth.json")
        parser.add_argument("--label", required=True)
        parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
        parser.add_argument("--auth-url", default="", help="auth server for refreshes (default auth.openai.com)")
        parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
        parser.add_argument("--account-id", default=None, help="pin the chatgpt_account_id")
        parser.add_argument(
            "--allow-duplicate", action="store_true", help="add it even if this ChatGPT account is already an account"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            with open(opts["file"], "rb") as fh:
                data = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CommandError(f"cannot read {opts['file']}: {exc}") from None
        if not isinstance(data, dict):
            raise CommandError("auth.json must hold a JSON object")
        try:
            account = codex_import_auth_json(
                data=data,
                label=opts["label"],
                base_url=opts["base_url"],
                model_names=[m for m in str(opts["models"]).split(",") if m.strip()],
                provider_config={"auth_url": opts["auth_url"]} if opts["auth_url"] else None,
                pin_account_id=opts["account_id"],
                actor=cli_actor("codex_import"),
                allow_duplicate=opts["allow_duplicate"],
            )
        except (CodexLoginError, DuplicateIdentity) as exc:
            raise CommandError(str(exc)) from None
        secret = account.credential.secret
        self.stdout.write(
            f"imported: account {account.id} '{account.label}' (ChatGPT account {secret['account_id']}, "
            f"plan {secret.get('plan_type') or '?'}), installation id {account.installation_id}"
        )
