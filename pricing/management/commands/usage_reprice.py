from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.rollups import rollups_rebuild
from pricing.services import usage_reprice


class Command(BaseCommand):
    help = "Price usage records again with today's price overrides, then rebuild the rollups."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
        parser.add_argument("--end", help="last day, inclusive (default: today)")
        parser.add_argument("--no-rebuild", action="store_true", help="leave the rollups as they are")

    def handle(self, *args: Any, **options: Any) -> None:
        start_day = datetime.strptime(options["start"], "%Y-%m-%d").date()
        end_day = datetime.strptime(options["end"], "%Y-%m-%d").date() if options["end"] else datetime.now(UTC).date()
        start = datetime.combine(start_day, time.min, tzinfo=UTC)
        end = datetime.combine(end_day + timedelta(days=1), time.min, tzinfo=UTC)
        changed = usage_reprice(start=start, end=end)
        self.stdout.write(f"{changed} records priced differently")
        if changed and not options["no_rebuild"]:
            folded = rollups_rebuild()
            self.stdout.write(f"rollups rebuilt from {folded} records")
