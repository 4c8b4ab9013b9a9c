"""Cost of pricing one usage record: the price book's card vs genai-prices' own calc_price,
and the memory the price data adds to a process.

    .venv/bin/python bench/bench_pricing.py [--n 20000]

No database or store needed (the price book is built in memory).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")
os.environ.setdefault("PROXY_VAR_DIR", str(ROOT / "var" / "bench"))

import django  # noqa: E402

django.setup()


def _rss_mib() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()

    from pricing.cost import TokenCounts
    from pricing.selectors import PriceBook, _Account

    before = _rss_mib()
    from genai_prices import Usage, calc_price

    book = PriceBook([], {1: _Account("https://api.openai.com/v1", False), 2: _Account("", False)})
    now = datetime.now(UTC)
    book.price(account_id=1, requested="gpt-4o-mini", served="", tokens=TokenCounts(input=1), at=now)
    print(f"price data loaded: +{_rss_mib() - before:.1f} MiB RSS")
    for model, account in (("gpt-4o-mini", 1), ("claude-sonnet-4-5-20250929", 2)):
        t0 = time.perf_counter()
        for i in range(args.n):
            tokens = TokenCounts(input=12_000 + i, output=800, cache_read=9_000, reasoning=100)
            book.price(account_id=account, requested=model, served=model, tokens=tokens, at=now)
        card_us = (time.perf_counter() - t0) / args.n * 1e6
        n = max(1, args.n // 10)
        t0 = time.perf_counter()
        for i in range(n):
            calc_price(Usage(input_tokens=12_000 + i, output_tokens=800, cache_read_tokens=9_000), model)
        library_us = (time.perf_counter() - t0) / n * 1e6
        print(f"{model}: price book {card_us:.1f} us/record, genai_prices.calc_price {library_us:.1f} us/record")


if __name__ == "__main__":
    main()
