"""What a request cost: the price book (admin overrides + account billing + list prices).

`PriceBook.price()` is the one place that decides a record's cost. It is called off the
request path by the usage flusher for every record (audit.services), and on the request path
only for keys under a money budget (routing.limits settles their real cost). The book is a
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

from accounts.models import UpstreamAccount
from accounts.selectors import cache_generation
from pricing.cost import FREE, PriceCard, Rate, TokenCounts
from pricing.library import list_price
from pricing.models import PriceMode, PriceRule
from proxy_project.db import db_call

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
        book = _store(await db_call(_load), generation)
    return book


def price_book_clear() -> None:
    _cache.book = None


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
