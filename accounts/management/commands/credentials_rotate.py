"""Re-encrypt every stored credential under the first key of PROXY_CREDENTIAL_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.services import credentials_rotate
from audit.services import cli_actor


class Command(BaseCommand):
    help = (
        "Re-encrypt all credentials and gateway tokens under the newest key. Put the new key first in "
        "PROXY_CREDENTIAL_KEYS (keep the old ones after it), run this, then remove the old keys."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = credentials_rotate(actor=cli_actor("credentials_rotate"))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"re-encrypted {count} credential(s) under the first configured key")
