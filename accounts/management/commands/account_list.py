from django.core.management.base import BaseCommand

from accounts.display import ago_label
from accounts.health import accounts_health
from accounts.models import UpstreamAccount
from statestore.factory import store_is_shared


class Command(BaseCommand):
    help = "List upstream accounts with their health (never prints credentials)."

    def handle(self, *args: object, **opts: object) -> None:
        # Health comes from the usage records (the database): right in every mode. Cooldowns
        # live in the state store, which this process can only see when it is shared (Redis).
        shared = store_is_shared()
        health = accounts_health(live=shared)
        for a in UpstreamAccount.objects.order_by("id"):
            h = health[a.pk]
            rate = f"{100 * h.success_rate:.0f}% of {h.attempts}" if h.success_rate is not None else "no attempts"
            cooling = ",".join(f"{c.scope} until {c.until:%H:%M:%S}" for c in h.cooling) or "-"
            self.stdout.write(
                f"{a.id}\t{a.label}\t{a.provider}\t{'enabled' if a.enabled else 'disabled'}\t{a.state}\t"
                f"health={h.status.value}\tsuccess(1h)={rate}\tlast_success={ago_label(h.last_success_at)}\t"
                f"cooling={cooling if shared else 'n/a'}\tprio={a.priority}\t{a.base_url}\t{','.join(a.model_names)}"
            )
        if not shared:
            self.stderr.write(
                "cooldowns: n/a here (embedded store: they live in the web server's memory); "
                "see the accounts board in the admin (/admin/accounts/upstreamaccount/)"
            )
