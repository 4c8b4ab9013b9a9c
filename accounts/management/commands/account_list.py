from django.core.management.base import BaseCommand

from accounts.models import UpstreamAccount


class Command(BaseCommand):
    help = "List upstream accounts (never prints credentials)."

    def handle(self, *args: object, **opts: object) -> None:
        for a in UpstreamAccount.objects.order_by("id"):
            self.stdout.write(
                f"{a.id}\t{a.label}\t{a.provider}\t{'enabled' if a.enabled else 'disabled'}\t{a.state}\t"
                f"prio={a.priority}\t{a.base_url}\t{','.join(a.model_names)}"
            )
