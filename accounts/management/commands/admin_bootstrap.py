import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first superuser 'admin' (once) and print its password; no-op afterwards."

    def handle(self, *args: object, **opts: object) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "", password)
        self.stdout.write(f">> created admin user 'admin' with password: {password}  (change it in the admin)")
