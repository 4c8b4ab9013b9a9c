from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import Team
from accounts.services import client_key_create
from audit.services import cli_actor


class Command(BaseCommand):
    help = "Create a developer key. The key is printed once and never stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", default="", help="who holds the key")
        parser.add_argument("--models", default="", help="comma-separated allow-list (default: every model)")
        parser.add_argument("--team", default="", help="team name: the key gets its models and limits")
        parser.add_argument("--expires-days", type=int, default=None)
        parser.add_argument("--quiet", action="store_true", help="print only the key")

    def handle(self, *args: object, **opts: object) -> None:
        days = opts["expires_days"]
        team = None
        if opts["team"]:
            team = Team.objects.filter(name=str(opts["team"])).first()
            if team is None:
                raise CommandError(f"no team named {opts['team']!r}")
        key, raw = client_key_create(
            name=str(opts["name"]),
            team_id=team.pk if team else None,
            owner_label=str(opts["owner"]),
            allowed_models=[m for m in str(opts["models"]).split(",") if m],
            expires_at=timezone.now() + timedelta(days=int(days)) if days else None,  # type: ignore[call-overload]
            actor=cli_actor("key_create"),
        )
        if opts["quiet"]:
            self.stdout.write(raw)
        else:
            self.stdout.write(f"created key {key.id} '{key.name}'. Copy it now, it is not shown again:\n{raw}")
