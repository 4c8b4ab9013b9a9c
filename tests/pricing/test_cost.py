"""Prices from the library match a hand calculation from the providers' published rates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing.cost import PriceCard, Rate, TokenCounts, usd_format, usd_to_nano
from pricing.library import list_price


def _card(model: str, api_url: str = "") -> PriceCard:
    found = list_price(model, api_url=api_url)
    assert found is not None, model
    return found.card


def test_gpt_4o_mini_with_cached_prompt_and_reasoning() -> None:
    # OpenAI's published rates: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    # 1,000 prompt tokens of which 200 cached; 500 output tokens of which 100 reasoning
    # (reasoning is part of the output count and billed as output).
    t = TokenCounts(input=1000, output=500, cache_read=200, reasoning=100)
    hand = (800 * Decimal("0.15") + 200 * Decimal("0.075") + 500 * Decimal("0.60")) / 1_000_000
    assert hand == Decimal("0.000435")
    assert _card("gpt-4o-mini").cost_usd(t) == hand
    assert _card("gpt-4o-mini").cost_nano(t) == 435_000


def test_claude_sonnet_4_5_cache_reads_and_writes() -> None:
    # Anthropic's rates for Claude Sonnet 4.5 (prompts <= 200k): $3 input, $0.30 cache read,
    # $3.75 cache write (5 min), $15 output per 1M tokens. Input counts include cache traffic.
    t = TokenCounts(input=10_000, output=2_000, cache_read=2_000, cache_write=1_000)
    hand = (7_000 * 3 + 2_000 * Decimal("0.30") + 1_000 * Decimal("3.75") + 2_000 * 15) / Decimal(1_000_000)
    assert hand == Decimal("0.05535")
    assert _card("claude-sonnet-4-5-20250929").cost_nano(t) == 55_350_000


def test_long_context_tier_applies_to_the_whole_request() -> None:
    # Above 200k prompt tokens Sonnet 4.5 costs $6 input / $22.50 output per 1M.
    t = TokenCounts(input=250_000, output=1_000)
    hand = (250_000 * 6 + 1_000 * Decimal("22.5")) / Decimal(1_000_000)
    assert _card("claude-sonnet-4-5").cost_usd(t) == hand == Decimal("1.5225")


def test_the_accounts_api_decides_the_provider() -> None:
    # The same name on api.openai.com is OpenAI's price.
    assert list_price("gpt-4o-mini", api_url="https://api.openai.com/v1").provider == "openai"  # type: ignore[union-attr]
    # An unknown (private) URL falls back to matching the model name.
    assert list_price("gpt-4o-mini", api_url="https://llm.internal.example/v1") is not None


def test_unknown_model_has_no_list_price() -> None:
    assert list_price("gitlab-duo") is None
    assert list_price("") is None


def test_missing_cache_rates_bill_the_input_rate() -> None:
    card = PriceCard(input=Rate(Decimal(2)), output=Rate(Decimal(8)))
    # No cache prices listed: cached and cache-write tokens are ordinary input tokens.
    t = TokenCounts(input=1_000, output=10, cache_read=400, cache_write=100)
    assert card.cost_usd(t) == (1_000 * 2 + 10 * 8) / Decimal(1_000_000)


def test_reasoning_reported_outside_output_is_still_billed() -> None:
    card = PriceCard(input=Rate(Decimal(1)), output=Rate(Decimal(10)))
    inside = card.cost_nano(TokenCounts(input=0, output=100, reasoning=40))
    outside = card.cost_nano(TokenCounts(input=0, output=60, reasoning=100))
    assert inside == 1_000_000  # 100 output tokens at $10/M
    assert outside == 1_600_000  # 60 + 100


def test_nothing_used_costs_nothing_even_with_a_request_fee() -> None:
    card = PriceCard(input=Rate(Decimal(1)), output=Rate(Decimal(1)), per_request=Decimal("0.005"))
    assert card.cost_nano(TokenCounts()) == 0
    assert card.cost_nano(TokenCounts(input=1)) == usd_to_nano("0.005001")


@pytest.mark.parametrize(
    ("nano", "text"),
    [(0, "$0.00"), (None, "-"), (435_000, "$0.0004"), (55_350_000, "$0.06"), (12_345_670_000_000, "$12,345.67")],
)
def test_usd_format(nano: int | None, text: str) -> None:
    assert usd_format(nano) == text
