from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import ClientKey
from accounts.services import client_key_set_enabled
from audit.services import cli_actor


class Command(BaseCommand):
    help = "Disable (or with --enable, re-enable) a developer key by id or name."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key", help="id or name")
        parser.add_argument("--enable", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        ref = str(opts["key"])
        qs = ClientKey.objects.filter(id=int(ref)) if ref.isdigit() else ClientKey.objects.filter(name=ref)
        key = qs.first()
        if key is None:
            raise CommandError(f"no key {ref!r}")
        client_key_set_enabled(key=key, enabled=bool(opts["enable"]), actor=cli_actor("key_disable"))
        self.stdout.write(f"key '{key.name}' {'enabled' if opts['enable'] else 'disabled'}")
