from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import UpstreamAccount
from accounts.services import account_set_enabled
from audit.services import cli_actor


class Command(BaseCommand):
    help = "Disable (or with --enable, re-enable) an upstream account by id or label."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account", help="id or label")
        parser.add_argument("--enable", action="store_true")

    def handle(self, *args: object, **opts: object) -> None:
        ref = str(opts["account"])
        qs = UpstreamAccount.objects.filter(id=int(ref)) if ref.isdigit() else UpstreamAccount.objects.filter(label=ref)
        account = qs.first()
        if account is None:
            raise CommandError(f"no account {ref!r}")
        account_set_enabled(account=account, enabled=bool(opts["enable"]), actor=cli_actor("account_disable"))
        self.stdout.write(f"account '{account.label}' {'enabled' if opts['enable'] else 'disabled'}")
