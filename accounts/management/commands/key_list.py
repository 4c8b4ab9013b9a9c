from django.core.management.base import BaseCommand

from accounts.models import ClientKey


class Command(BaseCommand):
    help = "List developer keys (prefixes only)."

    def handle(self, *args: object, **opts: object) -> None:
        for k in ClientKey.objects.order_by("id"):
            expires = k.expires_at.isoformat() if k.expires_at else "never"
            models = ",".join(k.allowed_models) or "*"
            self.stdout.write(
                f"{k.id}\t{k.name}\t{k.prefix}…\t{k.owner_label}\t{'enabled' if k.enabled else 'disabled'}\t"
                f"expires={expires}\tmodels={models}"
            )
