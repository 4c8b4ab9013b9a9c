from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import AccountState, UpstreamAccount
from accounts.services import account_mark_state
from state.cooldown import cooldowns_clear, cooldowns_list
from statestore.factory import call_sync


class Command(BaseCommand):
    help = "Show or clear an account's cooldowns (and with --reactivate, its needs-a-human state)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account", help="id or label")
        parser.add_argument("--list", action="store_true", help="only show the live cooldowns")
        parser.add_argument("--reactivate", action="store_true", help="also set the account state back to active")

    def handle(self, *args: object, **opts: object) -> None:
        ref = str(opts["account"])
        qs = UpstreamAccount.objects.filter(id=int(ref)) if ref.isdigit() else UpstreamAccount.objects.filter(label=ref)
        account = qs.first()
        if account is None:
            raise CommandError(f"no account {ref!r}")
        views = call_sync(lambda store: cooldowns_list(store, account_id=account.id))
        for v in views:
            self.stdout.write(f"{v.scope}\t{v.remaining:.0f}s\t{v.reason}")
        if opts["list"]:
            return
        call_sync(lambda store: cooldowns_clear(store, account_id=account.id))
        if opts["reactivate"] and account.state != AccountState.ACTIVE:
            account_mark_state(account_id=account.id, state=AccountState.ACTIVE, error="reactivated by an operator")
        self.stdout.write(f"cleared {len(views)} cooldown(s) on '{account.label}'")
