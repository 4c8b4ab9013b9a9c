# GatewayToken moved here from accounts: the table (accounts_gatewaytoken) already exists and
# keeps its rows, so this changes Django's model state only.

import django.db.models.deletion
from django.db import migrations, models

import accounts.models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0005_teams'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='GatewayToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('grant_kind', models.CharField(max_length=64)),
                        ('base_url', models.URLField(blank=True, default='', max_length=500)),
                        ('secret', accounts.models.EncryptedJSONField(help_text="{'token': ..., 'headers': {...}}")),
                        ('expires_at', models.DateTimeField()),
                        ('minted_at', models.DateTimeField()),
                        ('model_details', models.JSONField(blank=True, default=dict)),
                        ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='gateway_tokens', to='accounts.upstreamaccount')),
                    ],
                    options={
                        'db_table': 'accounts_gatewaytoken',
                        'constraints': [models.UniqueConstraint(fields=('account', 'grant_kind'), name='one_token_per_grant')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
