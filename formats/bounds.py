"""Size and shape bounds of a client body, checked before the work they would cause.

The body-size cap (bytes) alone does not bound the work: 31 MiB of tiny messages is about a
million messages, and parsing and translating them held one worker's event loop for 12 s
(issue 17 F3). Parsing cannot simply move to a thread: orjson holds the GIL for a whole
document (2.4 s for that body on a busy CI machine), and so does freeing it. So the number of
JSON values is bounded *before* parsing, from the raw bytes, at memchr speed:

    values <= 1 + commas + opening brackets

(a container of k items has k - 1 commas). Commas and brackets inside strings count too, so
this is an upper bound: a body under MAX_VALUES certainly has fewer values; one over it is
refused with 413 without being parsed. The limit sits far above real clients (a long Claude
Code or Codex CLI session is some tens of thousands of values; Anthropic documents 100,000
messages per request as its own limit, about 300,000 values at the smallest) and keeps the
worst parse the proxy accepts under about 0.1 s on an idle core.

Depth: JSON nested 1,000 levels parses, then breaks serialisers (orjson stops at 255 levels,
hit first in `routing.affinity.session_of` before this check existed) → 400 past MAX_DEPTH.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._core import InvalidRequest

MAX_DEPTH = 100
MAX_VALUES = 500_000


class RequestTooLarge(InvalidRequest):
    """Too many values for one request (413 in the client's dialect)."""


def values_upper_bound(raw: bytes) -> int:
    """At least the number of JSON values in `raw` (exact when no string holds , [ or { and no
    container is empty)."""
    return 1 + raw.count(b",") + raw.count(b"[") + raw.count(b"{")


def values_check(raw: bytes, *, max_values: int = MAX_VALUES) -> None:
    """Refuse, before parsing, a body that may hold more than `max_values` values."""
    if values_upper_bound(raw) > max_values:
        raise RequestTooLarge(
            None,
            f"the request has too many JSON values (at most {max_values:,} are accepted, counting "
            "every comma and bracket); split it up",
        )


# orjson refuses to serialise 255 or more levels of nesting (a C-speed walk): wrapped in
# this many extra lists, a body serialises exactly when it is at most MAX_DEPTH levels deep.
_ORJSON_MAX_DEPTH = 254


def depth_check(body: Any, raw: bytes | None = None, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise InvalidRequest if `body` is nested deeper than `max_depth` (the body is level 1).

    With `raw`, bodies with too few brackets to be that deep are passed without a walk."""
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    wrapped = body
    for _ in range(_ORJSON_MAX_DEPTH - max_depth):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        raise InvalidRequest(None, f"the request is nested more than {max_depth} levels deep") from None
