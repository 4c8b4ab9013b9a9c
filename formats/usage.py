"""Token usage in one canonical record, mapped per docs/protocols/translation.md#usage.

Canonical meaning (same as Responses): ``input_tokens`` is the *total* prompt size and
includes both cache reads (``cached_tokens``) and cache writes (``cache_creation_tokens``);
``output_tokens`` includes ``reasoning_tokens``. Anthropic is the odd one out: its
``input_tokens`` excludes cache reads and writes, so it is rebuilt/split at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._core import Dialect, JSONDict, as_dict, as_int


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0


def usage_from(dialect: Dialect, usage_obj: Any) -> Usage:
    """Read a dialect's usage object; tolerant of nulls and missing detail objects."""
    u = as_dict(usage_obj)
    if dialect is Dialect.CHAT:
        pd = as_dict(u.get("prompt_tokens_details"))
        cd = as_dict(u.get("completion_tokens_details"))
        return Usage(
            input_tokens=as_int(u.get("prompt_tokens")),
            output_tokens=as_int(u.get("completion_tokens")),
            cached_tokens=as_int(pd.get("cached_tokens")),
            # Not in OpenAI's schema; some compatible servers report it. Already included
            # in prompt_tokens like cached_tokens.
            cache_creation_tokens=as_int(pd.get("cache_write_tokens")),
            reasoning_tokens=as_int(cd.get("reasoning_tokens")),
        )
    if dialect is Dialect.RESPONSES:
        idt = as_dict(u.get("input_tokens_details"))
        odt = as_dict(u.get("output_tokens_details"))
        return Usage(
            input_tokens=as_int(u.get("input_tokens")),
            output_tokens=as_int(u.get("output_tokens")),
            cached_tokens=as_int(idt.get("cached_tokens")),
            cache_creation_tokens=as_int(idt.get("cache_write_tokens") or idt.get("cache_creation_tokens")),
            reasoning_tokens=as_int(odt.get("reasoning_tokens")),
        )
    read = as_int(u.get("cache_read_input_tokens"))
    write = as_int(u.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=as_int(u.get("input_tokens")) + read + write,
        output_tokens=as_int(u.get("output_tokens")),
        cached_tokens=read,
        cache_creation_tokens=write,
        # Anthropic folds thinking into output_tokens without a breakdown.
        reasoning_tokens=0,
    )


def usage_to(dialect: Dialect, u: Usage) -> JSONDict:
    if dialect is Dialect.CHAT:
        return {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        }
    if dialect is Dialect.RESPONSES:
        details: JSONDict = {"cached_tokens": u.cached_tokens}
        if u.cache_creation_tokens:
            # Optional extension (docs/protocols/responses.md#usage) so an Anthropic cache-write count survives the hub.
            details["cache_write_tokens"] = u.cache_creation_tokens
        return {
            "input_tokens": u.input_tokens,
            "input_tokens_details": details,
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.input_tokens + u.output_tokens,
        }
    return {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_creation_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }
