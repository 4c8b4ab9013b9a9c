"""The fast price cards agree with genai-prices' own calculation, and nothing is downloaded."""

from __future__ import annotations

import random
import socket
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from pricing.cost import TokenCounts
from pricing.library import CARD_KEYS, _card, list_price


def test_cards_match_the_library_on_every_token_priced_model() -> None:
    from genai_prices import Usage, data_snapshot

    rnd = random.Random(7)
    now = datetime.now(UTC)
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            prices = model.get_prices(now)
            card = _card(prices)
            if card is None:
                continue
            listed = {k for k, v in prices.__dict__.items() if v is not None}
            for prompt in (0, 7, 5_000, 250_000, 1_500_000):
                read = rnd.randint(0, prompt // 2) if "cache_read_mtok" in listed else 0
                write = rnd.randint(0, (prompt - read) // 2) if "cache_write_mtok" in listed else 0
                output = rnd.randint(1, 50_000)
                reasoning = rnd.randint(0, output) if "output_reasoning_mtok" in listed else 0
                usage: dict[str, Any] = {"input_tokens": prompt, "output_tokens": output}
                for key, value in (
                    ("cache_read_tokens", read),
                    ("cache_write_tokens", write),
                    ("output_reasoning_tokens", reasoning),
                ):
                    if value:
                        usage[key] = value
                expected = prices.calc_price(Usage(**usage))["total_price"]
                got = card.cost_usd(
                    TokenCounts(input=prompt, output=output, cache_read=read, cache_write=write, reasoning=reasoning)
                )
                assert got == expected, (provider.id, model.id, usage)
                checked += 1
    assert checked > 5_000  # the whole snapshot, not a handful
    assert set(CARD_KEYS) >= {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"}


def test_prices_come_from_the_bundled_snapshot_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pricing tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    from pricing.library import _lookup

    _lookup.cache_clear()
    assert list_price("gpt-4.1") is not None
    from genai_prices import data_snapshot

    assert not data_snapshot.get_snapshot().from_auto_update
    assert "genai_prices.update_prices" not in sys.modules or not _updater_running()


def _updater_running() -> bool:
    from genai_prices import update_prices

    shared = getattr(update_prices, "_shared_updater", None)
    return bool(shared and getattr(shared, "ref_count", 0))
