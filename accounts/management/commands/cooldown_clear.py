from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.flows.operations import account_cooldowns_clear
from accounts.models import AccountState, UpstreamAccount
from accounts.services import account_update
from audit.services import cli_actor
from state.cooldown import cooldowns_list
from statestore.factory import call_sync, store_is_shared

# The embedded store lives in the web server's memory: another process (this command) has its
# own, empty one, so it would list nothing and clear nothing while the server holds cooldowns.
EMBEDDED_STORE_MESSAGE = (
    "Cooldowns live in the web server's memory in the embedded mode (REDIS_URL is not set), and this "
    "command runs in a separate process: it can neither see nor clear them. Use the admin instead: "
    "Accounts board (/admin/accounts/upstreamaccount/) shows each account's cooldowns; select the account "
    "and run 'Clear cooldowns'. With REDIS_URL set, this command works."
)


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
        actor = cli_actor("cooldown_clear")
        if opts["reactivate"] and account.state != AccountState.ACTIVE:
            # The state is in the database: this part works in every mode.
            account_update(account=account, state=AccountState.ACTIVE, last_error="", actor=actor)
            self.stdout.write(f"'{account.label}' is active again")
        if not store_is_shared():
            raise CommandError(EMBEDDED_STORE_MESSAGE)
        views = call_sync(lambda store: cooldowns_list(store, account_id=account.id))
        for v in views:
            self.stdout.write(f"{v.scope}\t{v.remaining:.0f}s\t{v.reason}")
        if opts["list"]:
            if not views:
                self.stdout.write(f"no cooldowns on '{account.label}'")
            return
        cleared = account_cooldowns_clear(account=account, actor=actor)
        self.stdout.write(f"cleared {cleared or 0} cooldown(s) on '{account.label}'")
