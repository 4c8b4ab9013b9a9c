"""Give every account its own installation id.

0002 added the column with a callable default, which Django evaluates once for the rows that
already existed, so those rows shared one id. Re-mint ids that are shared; unique ones are left
alone (Codex keeps a copy in the credential, and a working account must not change identity).
"""

import uuid
from collections import Counter

from django.db import migrations


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    Account = apps.get_model("accounts", "UpstreamAccount")
    counts = Counter(Account.objects.values_list("installation_id", flat=True))
    for account in Account.objects.filter(installation_id__in=[i for i, n in counts.items() if n > 1]):
        account.installation_id = uuid.uuid4()
        account.save(update_fields=["installation_id"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_clientkey_limits")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
