"""Cost arithmetic: token counts x per-million-token rates -> nano-USD. Pure, no I/O.

Money is counted in integer nano-dollars (1e-9 USD) everywhere it is stored or summed (usage
records, rollups, budget counters in the state store): integers add exactly in SQL and in
Redis, and a nano-dollar is far below any price step (the cheapest listed token costs tens of
nano-dollars). Rates stay Decimal until the last step, so a record's cost is exact to the
nano-dollar.

Token semantics follow formats.Usage: `input` is the whole prompt *including* cache reads and
cache writes, `output` includes reasoning tokens (that is how OpenAI and Anthropic report and
bill them). So the uncached prompt is input - cache reads - cache writes, and reasoning is
billed as output unless a model lists its own reasoning rate. A rate the model does not list
(e.g. no cache-write price) bills those tokens at the plain input rate, as the providers do.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

NANO_PER_USD = 1_000_000_000
_NANO_PER_MTOK = Decimal(NANO_PER_USD) / Decimal(1_000_000)  # rate in USD/MTok -> nano-USD per token


@dataclass(frozen=True, slots=True)
class TokenCounts:
    input: int = 0  # whole prompt, including cache reads and writes
    output: int = 0  # including reasoning
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class Rate:
    """USD per million tokens; `tiers` are (start, rate) that apply once the request's whole
    prompt is longer than `start` tokens (long-context pricing)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()

    def at(self, prompt_tokens: int) -> Decimal:
        for start, rate in reversed(self.tiers):
            if prompt_tokens > start:
                return rate
        return self.base


@dataclass(frozen=True, slots=True)
class PriceCard:
    """What one model costs. None for a cache/reasoning rate = billed at the input/output rate."""

    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None
    per_request: Decimal = Decimal(0)  # a flat fee per request (USD), e.g. search-backed models

    def cost_usd(self, t: TokenCounts) -> Decimal:
        if not (t.input or t.output or t.reasoning):
            return Decimal(0)  # nothing was generated (refused, failed before any token): no charge
        n = t.input
        cache_read = min(max(t.cache_read, 0), n) if self.cache_read is not None else 0
        cache_write = min(max(t.cache_write, 0), n - cache_read) if self.cache_write is not None else 0
        # Some upstreams report reasoning outside the output count; never bill less than both.
        output = t.output if t.reasoning <= t.output else t.output + t.reasoning
        reasoning = min(max(t.reasoning, 0), output) if self.reasoning is not None else 0
        total = self.input.at(n) * (n - cache_read - cache_write) + self.output.at(n) * (output - reasoning)
        if self.cache_read is not None:
            total += self.cache_read.at(n) * cache_read
        if self.cache_write is not None:
            total += self.cache_write.at(n) * cache_write
        if self.reasoning is not None:
            total += self.reasoning.at(n) * reasoning
        return total / Decimal(1_000_000) + self.per_request

    def cost_nano(self, t: TokenCounts) -> int:
        return usd_to_nano(self.cost_usd(t))


FREE = PriceCard(input=Rate(Decimal(0)), output=Rate(Decimal(0)))


def usd_to_nano(usd: Decimal | int | float | str) -> int:
    return int((Decimal(str(usd)) * NANO_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def nano_to_usd(nano: int | None) -> Decimal | None:
    return None if nano is None else Decimal(nano) / NANO_PER_USD


def usd_format(nano: int | None, *, places: int = 2) -> str:
    """'$12.34'; amounts under a cent get more digits ('$0.0042') so they never read as $0.00."""
    if nano is None:
        return "-"
    usd = Decimal(nano) / NANO_PER_USD
    if usd and abs(usd) < Decimal("0.01"):
        return f"${usd:.4f}" if abs(usd) >= Decimal("0.0001") else f"${usd:.6f}"
    return f"${usd:,.{places}f}"
