from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_upstreamaccount_installation_id_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="clientkey",
            name="requests_per_minute",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="clientkey",
            name="tokens_per_day",
            field=models.PositiveBigIntegerField(blank=True, help_text="Per UTC calendar day.", null=True),
        ),
        migrations.AddField(
            model_name="clientkey",
            name="budget_tokens",
            field=models.PositiveBigIntegerField(
                blank=True, help_text="Tokens (input + output) allowed per budget period.", null=True
            ),
        ),
        migrations.AddField(
            model_name="clientkey",
            name="budget_period",
            field=models.CharField(
                choices=[("day", "Day"), ("week", "Week (ISO, from Monday)"), ("month", "Month")],
                default="month",
                max_length=8,
            ),
        ),
    ]
