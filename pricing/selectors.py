"""What a request cost: the price book (admin overrides + account billing + list prices).

`PriceBook.price()` is the one place that decides a record's cost. It is called off the
request path by the usage flusher for every record (audit.services), and on the request path
only for keys under a money budget (state.limits settles their real cost). The book is a
small in-memory copy of the override rules and of each account's billing, reloaded when the
shared cache version moves (admin changes) or after PRICE_BOOK_TTL seconds.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Sum

from accounts.models import UpstreamAccount
from accounts.selectors import cache_generation
from infra.db import db_call
from infra.singleflight import SingleFlight
from pricing.cost import FREE, PriceCard, Rate, TokenCounts, usd_to_nano
from pricing.library import list_price
from pricing.models import MoneyBudget, PriceMode, PriceRule
from state.limits import MoneyLimit

PRICE_BOOK_TTL = 10.0


class PriceSource:
    """How a record's cost was found (UsageRecord.price_source)."""

    LIST = "list"  # the library's list price
    RULE = "rule"  # an admin's custom price
    FREE = "free"  # a subscription account or a "free" rule
    UNKNOWN = "unknown"  # the model has no list price and no rule: cost left empty


@dataclass(frozen=True, slots=True)
class Priced:
    nano: int | None  # None: no price known (PriceSource.UNKNOWN)
    source: str


@dataclass(frozen=True, slots=True)
class _Rule:
    account_id: int | None
    pattern: str
    mode: str
    card: PriceCard | None  # custom rules only

    def matches(self, names: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(n, self.pattern) for n in names)


def _specificity(rule: _Rule) -> tuple[int, int, int]:
    exact = not any(c in rule.pattern for c in "*?[")
    return (rule.account_id is not None, exact, len(rule.pattern))


def _custom_card(row: PriceRule) -> PriceCard:
    zero = Decimal(0)
    inp = Rate(row.input_per_mtok if row.input_per_mtok is not None else zero)
    out = Rate(row.output_per_mtok if row.output_per_mtok is not None else zero)
    return PriceCard(
        input=inp,
        output=out,
        cache_read=Rate(row.cache_read_per_mtok) if row.cache_read_per_mtok is not None else None,
        cache_write=Rate(row.cache_write_per_mtok) if row.cache_write_per_mtok is not None else None,
    )


@dataclass(frozen=True, slots=True)
class _Account:
    api_url: str
    subscription: bool


class PriceBook:
    def __init__(self, rules: list[_Rule], accounts: dict[int, _Account]) -> None:
        # Most specific first: account's own, exact name, longer pattern.
        self.rules = sorted(rules, key=_specificity, reverse=True)
        self.accounts = accounts

    def rule_for(self, account_id: int | None, names: tuple[str, ...]) -> _Rule | None:
        for rule in self.rules:
            if (rule.account_id is None or rule.account_id == account_id) and rule.matches(names):
                return rule
        return None

    def card_for(
        self, account_id: int | None, requested: str, served: str = "", at: datetime | None = None
    ) -> tuple[PriceCard | None, str]:
        """The card that prices usage of this model on this account, and its PriceSource."""
        names = tuple(dict.fromkeys(n.strip().lower() for n in (requested, served) if n))
        rule = self.rule_for(account_id, names)
        if rule is not None:
            if rule.mode == PriceMode.FREE:
                return FREE, PriceSource.FREE
            if rule.mode == PriceMode.CUSTOM and rule.card is not None:
                return rule.card, PriceSource.RULE
        account = self.accounts.get(account_id or 0)
        if rule is None and account is not None and account.subscription:
            return FREE, PriceSource.FREE
        # The served name first: it is what the upstream actually ran (e.g. a dated version).
        for name in reversed(names):
            found = list_price(name, api_url=account.api_url if account else "", at=at)
            if found is not None:
                return found.card, PriceSource.LIST
        return None, PriceSource.UNKNOWN

    def price(
        self, *, account_id: int | None, requested: str, served: str, tokens: TokenCounts, at: datetime | None = None
    ) -> Priced:
        if not account_id:
            return Priced(0, "")  # never reached an upstream: nothing to pay
        card, source = self.card_for(account_id, requested, served, at)
        if card is None:
            # Unknown price: empty, not zero, so reports can say "n requests unpriced" — unless
            # nothing was used, which costs nothing whatever the price.
            return Priced(None if (tokens.input or tokens.output) else 0, source)
        return Priced(card.cost_nano(tokens), source)


def _load() -> PriceBook:
    from executors.registry import provider_billing

    rules = [
        _Rule(
            row.account_id,
            row.model.strip().lower(),
            row.mode,
            _custom_card(row) if row.mode == PriceMode.CUSTOM else None,
        )
        for row in PriceRule.objects.all()
    ]
    accounts = {
        pk: _Account(api_url=base_url or "", subscription=provider_billing(provider) == "subscription")
        for pk, provider, base_url in UpstreamAccount.objects.values_list("id", "provider", "base_url")
    }
    return PriceBook(rules, accounts)


class _Cache:
    book: PriceBook | None = None
    loaded_at = 0.0
    generation = -1


_cache = _Cache()
_book_flight: SingleFlight[PriceBook] = SingleFlight()
_load_lock = threading.Lock()


def _fresh() -> PriceBook | None:
    book = _cache.book
    if book is None or _cache.generation != cache_generation():
        return None
    return book if time.monotonic() - _cache.loaded_at < PRICE_BOOK_TTL else None


def _store(book: PriceBook, generation: int) -> PriceBook:
    _cache.book, _cache.loaded_at, _cache.generation = book, time.monotonic(), generation
    return book


def price_book_sync() -> PriceBook:
    """The current book, from sync code (the usage flusher's database thread)."""
    book = _fresh()
    if book is None:
        with _load_lock:
            generation = cache_generation()
            book = _fresh() or _store(_load(), generation)
    return book


async def price_book() -> PriceBook:
    book = _fresh()
    if book is None:
        generation = cache_generation()
        book = await _book_flight.run(generation, lambda: _book_load(generation))
    return book


async def _book_load(generation: int) -> PriceBook:
    return _store(await db_call(_load), generation)


def price_book_clear() -> None:
    _cache.book = None
    _budgets.by_key = None


def tokens_of(row: object) -> TokenCounts:
    """TokenCounts of anything with the usage record's token attributes (record or draft)."""
    return TokenCounts(
        input=getattr(row, "input_tokens", 0) or 0,
        output=getattr(row, "output_tokens", 0) or 0,
        cache_read=getattr(row, "cached_tokens", 0) or 0,
        cache_write=getattr(row, "cache_creation_tokens", 0) or 0,
        reasoning=getattr(row, "reasoning_tokens", 0) or 0,
    )


def usage_rows_price(rows: list, book: PriceBook | None = None) -> None:  # type: ignore[type-arg]
    """Set cost_nanousd / price_source on usage records that were not priced on the request path."""
    book = book or price_book_sync()
    for row in rows:
        if row.price_source:
            continue
        at = row.created_at if isinstance(row.created_at, datetime) else datetime.now(UTC)
        priced = book.price(
            account_id=row.account_id,
            requested=row.requested_model,
            served=row.served_model,
            tokens=tokens_of(row),
            at=at,
        )
        row.cost_nanousd, row.price_source = priced.nano, priced.source


# --------------------------------------------------------------------------- money budgets


class _BudgetCache:
    by_key: dict[int, tuple[MoneyLimit, ...]] | None = None
    by_team: dict[int, tuple[MoneyLimit, ...]] = {}
    loaded_at = 0.0
    generation = -1


_budgets = _BudgetCache()
_budgets_flight: SingleFlight[None] = SingleFlight()


def _load_budgets() -> tuple[dict[int, tuple[MoneyLimit, ...]], dict[int, tuple[MoneyLimit, ...]]]:
    by_key: dict[int, list[MoneyLimit]] = {}
    by_team: dict[int, list[MoneyLimit]] = {}
    for key_id, team_id, usd, period in MoneyBudget.objects.values_list("key_id", "team_id", "usd", "period"):
        if team_id:
            by_team.setdefault(team_id, []).append(MoneyLimit("team", team_id, usd_to_nano(usd), period))
        elif key_id:
            by_key.setdefault(key_id, []).append(MoneyLimit("key", key_id, usd_to_nano(usd), period))
    return {k: tuple(v) for k, v in by_key.items()}, {k: tuple(v) for k, v in by_team.items()}


async def money_limits(key_id: int, team_id: int | None) -> tuple[MoneyLimit, ...]:
    """The money budgets that apply to a request of this key: its own and its team's.

    Hot path for every request with a key: a dict lookup in a per-process copy of the small
    budget table, reloaded like the key cache (version bump or PROXY_CACHE_TTL_SECONDS).
    """
    generation = cache_generation()
    if (
        _budgets.by_key is None
        or _budgets.generation != generation
        or time.monotonic() - _budgets.loaded_at > settings.PROXY_CACHE_TTL_SECONDS
    ):
        # One query for a burst of requests (infra/singleflight.py).
        await _budgets_flight.run(generation, lambda: _budgets_load(generation))
    own = (_budgets.by_key or {}).get(key_id, ())
    return own + _budgets.by_team.get(team_id, ()) if team_id else own


async def _budgets_load(generation: int) -> None:
    _budgets.by_key, _budgets.by_team = await db_call(_load_budgets)
    _budgets.loaded_at, _budgets.generation = time.monotonic(), generation


def money_limits_clear() -> None:
    _budgets.by_key = None


async def request_cost_max(model: str, tokens: TokenCounts) -> int:
    """The most a request can cost before an account is chosen: its model's price on every
    account (rules for all accounts, else list price). 0 when no price is known; the real
    cost settles the budget afterwards either way."""
    card, _ = (await price_book()).card_for(None, model)
    return card.cost_nano(tokens) if card is not None else 0


async def usage_draft_price(draft: object) -> int | None:
    """Price a finished request on the request path (only for money budgets); the record
    keeps the result so the flusher does not price it again."""
    priced = (await price_book()).price(
        account_id=getattr(draft, "account_id", None),
        requested=getattr(draft, "requested_model", ""),
        served=getattr(draft, "served_model", ""),
        tokens=tokens_of(draft),
    )
    draft.cost_nanousd, draft.price_source = priced.nano, priced.source  # type: ignore[attr-defined]
    return priced.nano


# --------------------------------------------------------------------------- budget use


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """How much of one budget the current period has used (from the rollups, ~1 min behind)."""

    scope: str  # "key" | "team"
    scope_id: int
    label: str
    kind: str  # "money" (nano-USD) | "tokens"
    period: str  # "day" | "week" | "month"
    limit: int
    used: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.limit if self.limit else (100.0 if self.used else 0.0)

    @property
    def ident(self) -> str:
        """Stable name of this budget (alert state key)."""
        return f"{self.scope}:{self.scope_id}:{self.kind}:{self.period}"


def _used_per_key(since: datetime) -> dict[int, tuple[int, int]]:
    """(tokens, nano-USD) per key since `since`, from the daily per-key rollups."""
    from audit.models import Granularity, UsageRollup

    rows = (
        UsageRollup.objects.filter(granularity=Granularity.DAY_KEY, bucket__gte=since)
        .values("client_key_id")
        .annotate(tok=Sum(F("input_tokens") + F("output_tokens")), cost=Sum("cost_nanousd"))
        .order_by()
    )
    return {r["client_key_id"]: (r["tok"] or 0, r["cost"] or 0) for r in rows}


def budget_statuses(now: datetime | None = None) -> list[BudgetStatus]:
    """Every budget with its use this period: money budgets of keys and teams, and each
    enabled key's token budgets (its own and those its team gives every key)."""
    from accounts.models import ClientKey
    from accounts.selectors import key_limits_effective
    from state.limits import period_start

    now = now or datetime.now(UTC)
    used = {p: _used_per_key(period_start(now, p)) for p in ("day", "week", "month")}
    keys = list(ClientKey.objects.filter(enabled=True).select_related("team", "owner"))
    out: list[BudgetStatus] = []
    for key in keys:
        limits = key_limits_effective(key)
        token_budgets = list(limits.budgets)
        if limits.tokens_per_day is not None:
            token_budgets.append((limits.tokens_per_day, "day"))
        for tokens, period in token_budgets:
            used_tokens = used[period].get(key.id, (0, 0))[0]
            out.append(BudgetStatus("key", key.id, _key_label(key), "tokens", period, tokens, used_tokens))
    members: dict[int, list[int]] = {}
    for team_id, key_id in ClientKey.objects.exclude(team=None).values_list("team_id", "id"):
        members.setdefault(team_id, []).append(key_id)
    for budget in MoneyBudget.objects.select_related("key", "key__owner", "team"):
        per_key, limit = used[budget.period], usd_to_nano(budget.usd)
        if budget.team_id:
            spent = sum(per_key.get(k, (0, 0))[1] for k in members.get(budget.team_id, ()))
            label = f"team {budget.team.name}" if budget.team else f"team #{budget.team_id}"
            out.append(BudgetStatus("team", budget.team_id, label, "money", budget.period, limit, spent))
        elif budget.key_id and budget.key:
            spent = per_key.get(budget.key_id, (0, 0))[1]
            label = _key_label(budget.key)
            out.append(BudgetStatus("key", budget.key_id, label, "money", budget.period, limit, spent))
    return out


def _key_label(key: object) -> str:
    owner = getattr(key, "owner_label", "") or getattr(getattr(key, "owner", None), "username", "")
    name = getattr(key, "name", "")
    return f"key {name} ({owner})" if owner else f"key {name}"
