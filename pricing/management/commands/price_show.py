from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import UpstreamAccount
from pricing.cost import TokenCounts, usd_format
from pricing.library import library_version
from pricing.selectors import price_book_sync


class Command(BaseCommand):
    help = "Show which price applies to a model (on an account) and what 1M input + 1M output tokens cost."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--account", help="account id or label")

    def handle(self, *args: Any, **options: Any) -> None:
        account_id = None
        if options["account"]:
            ref = options["account"]
            account = UpstreamAccount.objects.filter(**({"id": int(ref)} if ref.isdigit() else {"label": ref})).first()
            if account is None:
                raise CommandError(f"no account {ref!r}")
            account_id = account.id
        card, source = price_book_sync().card_for(account_id, options["model"])
        self.stdout.write(f"source: {source} ({library_version()})")
        if card is None:
            self.stdout.write("no price known: records of this model are left unpriced (add an override)")
            return
        for label, counts in (
            ("1M input tokens", TokenCounts(input=1_000_000)),
            ("1M output tokens", TokenCounts(output=1_000_000)),
            ("1M cached input tokens", TokenCounts(input=1_000_000, cache_read=1_000_000)),
        ):
            self.stdout.write(f"{label}: {usd_format(card.cost_nano(counts), places=4)}")
