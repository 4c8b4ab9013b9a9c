"""Make a usage record storable whatever the client or the upstream put into it.

A record mixes values from three sources the proxy does not control: the client (model name),
the upstream (token counts, served model, request id, error text) and the proxy itself. Any of
them can hold what the database refuses: PostgreSQL text cannot contain NUL, jsonb cannot hold
`\\u0000`, an `integer` column ends at 2**31 - 1, a positive one at 0; and a lone surrogate
cannot even be serialised. One such row used to fail every batch insert after it, for good
(docs/reliability.md, "Usage recording cannot be poisoned").

So every record is cleaned where it is built (`_Finisher.finish()` → `usage_draft_clean`),
again when it is read back from the buffer (`usage_row_clean`: entries written by an older
version, or by a bug), and the flusher still sets aside any row the database refuses.

The rules come from the model's own fields (column lengths, integer ranges), so a column added
to UsageRecord is covered without touching this file.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations

# The most-restrictive common ranges (PostgreSQL's), whatever the backend in use: a record
# that fits here fits everywhere, and the same request is recorded the same way in tests.
_RANGES: dict[str, tuple[int, int]] = BaseDatabaseOperations.integer_field_ranges
# Token counts that had to be clamped are no longer the upstream's exact numbers.
_TOKEN_FIELDS = frozenset(
    {"input_tokens", "output_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens"}
)


def text_clean(value: Any, limit: int | None = None) -> str:
    """A string PostgreSQL accepts: no NUL, no lone surrogate, at most `limit` characters."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    if "\x00" in text:
        text = text.replace("\x00", "")
    if limit is not None and len(text) > limit:
        text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: orjson and psycopg both refuse them
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def int_clamp(value: Any, low: int, high: int) -> tuple[int, bool]:
    """(value forced into [low, high], whether it had to change)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            number = int(value) if isinstance(value, float) and math.isfinite(value) else int(str(value))
        except (TypeError, ValueError):
            return max(low, min(0, high)), True
        return int_clamp(number, low, high)[0], True
    if value < low:
        return low, True
    if value > high:
        return high, True
    return value, False


def json_clean(value: Any, depth: int = 0, *, max_depth: int | None = 32) -> Any:
    """A JSON value jsonb accepts (strings cleaned, keys too); past `max_depth` levels it is
    cut (a usage record's attempt log is shallow; callers keeping client data pass None)."""
    if isinstance(value, str):
        return text_clean(value)
    if max_depth is not None and depth >= max_depth:
        return None
    if isinstance(value, dict):
        return {text_clean(k): json_clean(v, depth + 1, max_depth=max_depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v, depth + 1, max_depth=max_depth) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class _Spec:
    """The storable shape of UsageRecord, from its fields."""

    texts: tuple[tuple[str, int | None, bool], ...]  # (attname, max_length, nullable)
    ints: tuple[tuple[str, int, int, bool], ...]  # (attname, low, high, nullable)
    jsons: tuple[str, ...]


@functools.cache
def _spec() -> _Spec:
    from audit.models import UsageRecord

    texts, ints, jsons = [], [], []
    for f in UsageRecord._meta.concrete_fields:
        # Foreign keys are stored under their attname (client_key_id, account_id).
        if isinstance(f, models.CharField | models.TextField):
            texts.append((f.attname, f.max_length, f.null))
        elif isinstance(f, models.IntegerField) and not isinstance(f, models.AutoField):
            low, high = _RANGES.get(f.get_internal_type(), _RANGES["BigIntegerField"])
            ints.append((f.attname, low, high, f.null))
        elif isinstance(f, models.JSONField):
            jsons.append(f.attname)
    return _Spec(tuple(texts), tuple(ints), tuple(jsons))


def _text_ok(value: Any, limit: int | None) -> bool:
    if type(value) is not str or "\x00" in value or (limit is not None and len(value) > limit):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_ok(value: Any) -> bool:
    try:
        # Serialisable, and no NUL escape anywhere in it (the usual case, one fast call).
        return b"\\u0000" not in orjson.dumps(value)
    except orjson.JSONEncodeError:  # lone surrogates, too deep, non-string keys
        return False


def usage_draft_clean(draft: Any) -> None:
    """Clean a UsageDraft in place (before it is buffered or settled against key limits).

    A clamped token count marks the record `usage_estimated`: it is no longer the upstream's
    exact number. Cost: a few microseconds (one pass, fast paths for clean values).
    """
    spec = _spec()
    for name, limit, nullable in spec.texts:
        value = getattr(draft, name, None)
        if not (value is None and (nullable or not hasattr(draft, name))) and not _text_ok(value, limit):
            setattr(draft, name, text_clean(value, limit))
    for name, low, high, nullable in spec.ints:
        value = getattr(draft, name, None)
        if type(value) is int and low <= value <= high:
            continue
        if value is None and (nullable or not hasattr(draft, name)):
            continue
        setattr(draft, name, int_clamp(value, low, high)[0])
        if name in _TOKEN_FIELDS:
            draft.usage_estimated = True
    for name in spec.jsons:
        value = getattr(draft, name, None)
        if value is not None and not _json_ok(value):
            setattr(draft, name, json_clean(value))


def usage_row_clean(data: dict[str, Any]) -> dict[str, Any]:
    """Clean one decoded buffer entry (a dict of UsageRecord fields) and return it."""
    row = SimpleNamespace(**data)
    usage_draft_clean(row)
    return vars(row)
