"""Changes to prices: override rules (with the action log) and re-pricing past records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError

from accounts.services import cache_version_bump
from audit.models import UsageRecord
from audit.services import model_delete_logged, model_save_logged
from pricing.models import MoneyBudget, PriceMode, PriceRule
from pricing.selectors import price_book_clear, price_book_sync, usage_rows_price

_RATE_FIELDS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
_FIELDS = ("account_id", "model", "mode", *_RATE_FIELDS, "note")


def price_rule_validate(rule: PriceRule) -> None:
    rule.model = rule.model.strip().lower()
    if not rule.model:
        raise ValidationError({"model": "Name a model or a pattern (* for every model)."})
    if rule.mode == PriceMode.CUSTOM and rule.input_per_mtok is None and rule.output_per_mtok is None:
        raise ValidationError({"input_per_mtok": "A custom price needs at least an input or an output rate."})
    for name in _RATE_FIELDS:
        value = getattr(rule, name)
        if value is not None and value < 0:
            raise ValidationError({name: "Prices cannot be negative."})
    clash = PriceRule.objects.filter(account_id=rule.account_id, model=rule.model).exclude(pk=rule.pk)
    if clash.exists():
        raise ValidationError({"model": "There is already an override for this model and account."})


def price_rule_save(rule: PriceRule, *, actor: Any | None = None) -> PriceRule:
    """Create or change an override (validated); applies to records written from now on."""
    price_rule_validate(rule)
    return model_save_logged(rule, fields=_FIELDS, target_type="price_rule", actor=actor, on_commit=_changed)


def price_rule_delete(rule: PriceRule, *, actor: Any | None = None) -> None:
    model_delete_logged(rule, fields=_FIELDS, target_type="price_rule", actor=actor, on_commit=_changed)


def _changed() -> None:
    price_book_clear()
    cache_version_bump()


def usage_reprice(*, start: datetime, end: datetime, batch: int = 5_000) -> int:
    """Price again the records created in [start, end) with today's rules (e.g. after adding an
    override for a private deployment). Records priced on the request path for a budget are
    re-priced too. Returns how many changed; rebuild the rollups afterwards to see them there."""
    price_book_clear()
    book = price_book_sync()
    changed = 0
    last_id = 0
    fields = ["id", "created_at", "account_id", "requested_model", "served_model", "input_tokens",
              "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens",
              "cost_nanousd", "price_source"]  # fmt: skip
    while True:
        rows = list(
            UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, id__gt=last_id)
            .order_by("id")
            .only(*fields)[:batch]
        )
        if not rows:
            return changed
        last_id = rows[-1].id
        before = [(r.cost_nanousd, r.price_source) for r in rows]
        for r in rows:
            r.price_source = ""
        usage_rows_price(rows, book)
        dirty = [r for r, old in zip(rows, before, strict=True) if (r.cost_nanousd, r.price_source) != old]
        UsageRecord.objects.bulk_update(dirty, ["cost_nanousd", "price_source"])
        changed += len(dirty)


# --------------------------------------------------------------------------- money budgets

_BUDGET_FIELDS = ("key_id", "team_id", "usd", "period")


def money_budget_validate(budget: MoneyBudget) -> None:
    if bool(budget.key_id) == bool(budget.team_id):
        raise ValidationError("A money budget belongs to one key or one team.")
    if budget.usd is None or budget.usd < 0:
        raise ValidationError({"usd": "A budget cannot be negative."})
    scope = {"team_id": budget.team_id} if budget.team_id else {"key_id": budget.key_id}
    clash = MoneyBudget.objects.filter(period=budget.period, **scope)
    if clash.exclude(pk=budget.pk).exists():
        raise ValidationError({"period": "This key or team already has a money budget for this period."})


def money_budget_save(budget: MoneyBudget, *, actor: Any | None = None) -> MoneyBudget:
    """Create or change a money budget; every process applies it within about a second."""
    money_budget_validate(budget)
    return model_save_logged(budget, fields=_BUDGET_FIELDS, target_type="money_budget", actor=actor, on_commit=_changed)


def money_budget_delete(budget: MoneyBudget, *, actor: Any | None = None) -> None:
    model_delete_logged(budget, fields=_BUDGET_FIELDS, target_type="money_budget", actor=actor, on_commit=_changed)
