from __future__ import annotations

from django.db import models

from accounts.models import BudgetPeriod


class PriceMode(models.TextChoices):
    LIST = "list", "List price (genai-prices)"
    CUSTOM = "custom", "Custom price (the rates below)"
    FREE = "free", "Free (subscription: no cost per request)"


class PriceRule(models.Model):
    """An admin's override of what usage costs, for one account or all, one model or many.

    Without a matching rule, usage on metered accounts (API keys) is priced at the library's
    list price and usage on subscription accounts (ChatGPT sign-in, GitLab Duo seats) is free,
    because their fee is paid whatever the usage. See docs/admin.md, "Cost in money".
    The most specific rule wins: an account's own rules before rules for every account; then
    an exact model name before a pattern, and a longer pattern before a shorter one.
    """

    account = models.ForeignKey(
        "accounts.UpstreamAccount",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty = every account.",
    )
    model = models.CharField(
        max_length=200,
        help_text="A model name as clients request it or as the upstream serves it; * and ? are wildcards (gpt-5*, *).",
    )
    mode = models.CharField(max_length=8, choices=PriceMode.choices, default=PriceMode.CUSTOM)
    # USD per million tokens. Cache and reasoning rates default to the input / output rate.
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_read_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="", help_text="Why (contract, deployment...).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "account_id"]
        constraints = [models.UniqueConstraint(fields=["account", "model"], name="one_price_rule_per_scope")]
        verbose_name = "price override"

    def __str__(self) -> str:
        scope = self.account.label if self.account_id and self.account else "every account"
        return f"{self.model} on {scope}: {self.get_mode_display()}"


class MoneyBudget(models.Model):
    """Spend allowed per UTC period, for one key or for a whole team (all its keys together).

    Enforced on the request path like the token budgets (state.limits: reserve the most a
    request can cost, settle its real cost). Several budgets of different periods may apply
    to one request (its key's and its team's, a day's and a month's): all must have room.
    """

    key = models.ForeignKey(
        "accounts.ClientKey", null=True, blank=True, on_delete=models.CASCADE, related_name="money_budgets"
    )
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="money_budgets"
    )
    usd = models.DecimalField("USD", max_digits=12, decimal_places=2, help_text="Spend allowed per period.")
    period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team_id", "key_id", "period"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(key__isnull=False, team__isnull=True)
                | models.Q(key__isnull=True, team__isnull=False),
                name="money_budget_one_scope",
            ),
            models.UniqueConstraint(fields=["key", "period"], name="one_money_budget_per_key_period"),
            models.UniqueConstraint(fields=["team", "period"], name="one_money_budget_per_team_period"),
        ]

    def __str__(self) -> str:
        scope = f"team {self.team}" if self.team_id else f"key {self.key}"
        return f"${self.usd} per {self.period} for {scope}"
