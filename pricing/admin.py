"""Price overrides and money budgets in the admin. Changes go through pricing.services
(validated, logged, applied by every process within about a second)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from pricing.cost import TokenCounts, usd_format
from pricing.library import library_version, list_price
from pricing.models import MoneyBudget, PriceRule
from pricing.selectors import budget_statuses
from pricing.services import (
    money_budget_delete,
    money_budget_save,
    money_budget_validate,
    price_rule_delete,
    price_rule_save,
    price_rule_validate,
)


class ServiceValidatedForm(forms.ModelForm):
    """A model form that runs its service's validator (`validate`) on an unsaved copy, so the
    admin shows the same errors the service would raise, on the right fields."""

    validate: Callable[[Any], None]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        names = [f for f in self._meta.fields or () if f in data]
        probe = self._meta.model(pk=self.instance.pk, **{k: data[k] for k in names})
        try:
            type(self).validate(probe)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None
        data.update({k: getattr(probe, k) for k in names})  # the validator may normalise values
        return data


class PriceRuleForm(ServiceValidatedForm):
    validate = staticmethod(price_rule_validate)

    class Meta:
        model = PriceRule
        fields = [
            "model",
            "account",
            "mode",
            "input_per_mtok",
            "output_per_mtok",
            "cache_read_per_mtok",
            "cache_write_per_mtok",
            "note",
        ]
        labels = {
            "input_per_mtok": "Input $ / 1M tokens",
            "output_per_mtok": "Output $ / 1M tokens",
            "cache_read_per_mtok": "Cached input $ / 1M tokens",
            "cache_write_per_mtok": "Cache write $ / 1M tokens",
        }


@admin.register(PriceRule)
class PriceRuleAdmin(admin.ModelAdmin):
    form = PriceRuleForm
    list_display = ["model", "scope", "mode", "input_per_mtok", "output_per_mtok", "list_price", "note"]
    list_filter = ["mode"]
    search_fields = ["model", "note"]

    @admin.display(description="account")
    def scope(self, obj: PriceRule) -> str:
        return obj.account.label if obj.account_id and obj.account else "every account"

    @admin.display(description=f"list price ({library_version()}), in / out per 1M")
    def list_price(self, obj: PriceRule) -> str:
        found = list_price(obj.model) if not any(c in obj.model for c in "*?[") else None
        if found is None:
            return "-"
        per_in = found.card.cost_nano(TokenCounts(input=1_000_000))
        per_out = found.card.cost_nano(TokenCounts(output=1_000_000))
        return f"{usd_format(per_in)} / {usd_format(per_out)}"

    def save_model(self, request: HttpRequest, obj: PriceRule, form: Any, change: bool) -> None:
        price_rule_save(obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: PriceRule) -> None:
        price_rule_delete(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PriceRule]) -> None:
        for rule in queryset:
            price_rule_delete(rule, actor=request.user)


# The changelist computes every budget's use once; its rows read it (admin classes are shared
# by all threads, so not on self).
_per_request = threading.local()


class MoneyBudgetForm(ServiceValidatedForm):
    validate = staticmethod(money_budget_validate)

    class Meta:
        model = MoneyBudget
        fields = ["key", "team", "usd", "period"]
        help_texts = {"team": "A team budget is shared by all the team's keys together."}


@admin.register(MoneyBudget)
class MoneyBudgetAdmin(admin.ModelAdmin):
    """Money budgets of keys and teams, with this period's spend (from the rollups)."""

    form = MoneyBudgetForm
    list_display = ["scope", "usd_label", "period", "spent"]
    list_filter = ["period"]

    @admin.display(description="key or team")
    def scope(self, obj: MoneyBudget) -> str:
        return f"team {obj.team}" if obj.team_id else f"key {obj.key}"

    @admin.display(description="budget")
    def usd_label(self, obj: MoneyBudget) -> str:
        return f"${obj.usd:,.2f}"

    @admin.display(description="spent this period")
    def spent(self, obj: MoneyBudget) -> str:
        statuses = getattr(_per_request, "statuses", {})
        found = statuses.get(f"{'team' if obj.team_id else 'key'}:{obj.team_id or obj.key_id}:money:{obj.period}")
        if found is None:
            return "-"
        return f"{usd_format(found.used)} ({found.percent:.0f} %)"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        _per_request.statuses = {s.ident: s for s in budget_statuses() if s.kind == "money"}
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: MoneyBudget, form: Any, change: bool) -> None:
        money_budget_save(obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: MoneyBudget) -> None:
        money_budget_delete(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[MoneyBudget]) -> None:
        for budget in queryset:
            money_budget_delete(budget, actor=request.user)
