"""List prices from genai-prices (pydantic/genai-prices, MIT), read from its bundled snapshot.

Why this library: it is maintained by the Pydantic team with per-provider sources, covers
cache reads, cache writes, long-context tiers and dated price changes, and ships its data
inside the package. We never start its `UpdatePrices` background fetcher, so nothing is
downloaded at run time: prices change when the pinned version is bumped (requirements.in).

Why not call `genai_prices.calc_price` per record: it costs ~0.35 ms per call (it re-derives
the unit tree and validates every price on each call), measured in docs/admin.md. Instead a
model's price is resolved through the library once and turned into a `PriceCard` (the same
rates, tiers and dated variant the library would use); the card's arithmetic costs a few
microseconds. tests/pricing/test_library.py checks that card and library agree to the
nano-dollar on every token-priced model of the snapshot.

The library module (~10 MB of price data) is imported on first use only: web workers that
never price a request (no money budgets) do not pay for it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pricing.cost import PriceCard, Rate

_lock = threading.Lock()
_cards: dict[int, tuple[Any, PriceCard | None]] = {}  # id(library ModelPrice) -> (that object, its card)

# The library's token price keys a card represents (plus `requests_kcount`, a flat fee per
# request). Others (audio, images, web searches...) are never reported by the proxy's text
# usage, so they cannot add to a record's cost.
CARD_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "output_reasoning_mtok": "reasoning",
}


@dataclass(frozen=True, slots=True)
class ListPrice:
    card: PriceCard
    provider: str  # the library's provider id, e.g. "openai"
    model: str  # the library's model id, e.g. "gpt-4o-mini"


def library_version() -> str:
    from importlib.metadata import version

    return f"genai-prices {version('genai-prices')}"


def _rate(value: Any) -> Rate | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return Rate(value)
    return Rate(value.base, tuple((int(t.start), t.price) for t in value.tiers))


def _card(model_price: Any) -> PriceCard | None:
    hit = _cards.get(id(model_price))
    if hit is not None and hit[0] is model_price:
        return hit[1]
    rates = {name: _rate(getattr(model_price, key, None)) for key, name in CARD_KEYS.items()}
    if rates["input"] is None and rates["output"] is None:
        card = None  # priced per request, per character, per second...: not a token model
    else:
        card = PriceCard(
            input=rates["input"] or Rate(Decimal(0)),
            output=rates["output"] or Rate(Decimal(0)),
            cache_read=rates["cache_read"],
            cache_write=rates["cache_write"],
            reasoning=rates["reasoning"],
            per_request=(getattr(model_price, "requests_kcount", None) or Decimal(0)) / 1000,
        )
    with _lock:
        _cards[id(model_price)] = (model_price, card)  # keeps the object alive: ids stay unique
    return card


# A dated suffix the library may not know yet ("-2026-04-23", "-20260423"): retried without it.
_DATED = re.compile(r"-(20\d\d-?\d\d-?\d\d)$")


@lru_cache(maxsize=4096)
def _lookup(model: str, api_url: str) -> tuple[Any, Any] | None:
    """(library provider, library model) for a model name, preferring the provider whose API
    the account calls (an OpenAI-compatible base URL) and else matching the name alone."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    for name in dict.fromkeys((model, _DATED.sub("", model))):
        for url in (api_url, "") if api_url else ("",):
            try:
                return snapshot.find_provider_model(name, None, None, url or None)
            except LookupError:
                continue
    return None


def list_price(model: str, *, api_url: str = "", at: datetime | None = None) -> ListPrice | None:
    """The library's price of `model` at `at` (default now), or None if it does not know it."""
    if not model:
        return None
    found = _lookup(model.strip().lower(), api_url.strip().lower())
    if found is None:
        return None
    provider, info = found
    card = _card(info.get_prices(at or datetime.now(UTC)))
    return None if card is None else ListPrice(card=card, provider=provider.id, model=info.id)
