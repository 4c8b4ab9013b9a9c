"""Shared vocabulary of the formats package: dialects, typed errors, JSON aliases.

Everything here is pure data; no module in ``formats`` performs I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson

# JSON values coming from clients and upstreams are untyped by nature; the translators
# check shapes explicitly (validate.py) instead of pretending the dicts are TypedDicts.
JSONDict = dict[str, Any]
JSONList = list[Any]


class Dialect(StrEnum):
    """The three client/upstream wire dialects."""

    CHAT = "chat"
    RESPONSES = "responses"
    MESSAGES = "messages"


class UnsupportedFeature(Exception):
    """A construct that cannot be carried to the target without losing meaning.

    Routing turns it into an HTTP 400 in the client's dialect, with ``field`` as the
    OpenAI ``param`` so the client sees exactly which field to drop.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidRequest(Exception):
    """A malformed client body (wrong types, missing required fields) -> HTTP 400."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class UpstreamFormatError(InvalidRequest):
    """An upstream sent something that is not valid in its own dialect.

    It subclasses InvalidRequest so that callers get one of two exception families from
    any translator, but routing can catch it first and answer 502 instead of 400: the
    client did nothing wrong.
    """


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def dumps_str(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def loads_event(data: bytes) -> JSONDict:
    """Parse one upstream SSE payload; anything but a JSON object is an upstream fault."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFormatError(None, f"upstream event is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise UpstreamFormatError(None, "upstream event is not a JSON object")
    return obj


# The largest integer every JSON reader keeps exact (IEEE doubles): an upstream's count past it,
# or below zero, is junk, and passing it on would break serialisers (orjson stops at 64 bits).
MAX_COUNT = 2**53 - 1


def as_int(value: Any) -> int:
    """Token counts arrive as int, null or missing; bools and junk count as 0, negatives as 0,
    and anything above MAX_COUNT as MAX_COUNT (issue 17: hostile upstream usage)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            return 0
        value = int(value)
    return 0 if value < 0 else min(value, MAX_COUNT)


def as_dict(value: Any) -> JSONDict:
    return value if isinstance(value, dict) else {}
