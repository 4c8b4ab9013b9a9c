# Provider and credential kinds come from the provider registry (callable choices), and
# GatewayToken now belongs to the GitLab app (executors.gitlab, same table): state only.

from django.db import migrations, models

import accounts.providers


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0006_clientkey_view_all_keys'),
        ('gitlab', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='upstreamaccount',
            name='provider',
            field=models.CharField(choices=accounts.providers.provider_choices, max_length=32),
        ),
        migrations.AlterField(
            model_name='credential',
            name='kind',
            field=models.CharField(choices=accounts.providers.credential_kind_choices, max_length=16),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='GatewayToken')],
            database_operations=[],
        ),
    ]
