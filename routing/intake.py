"""Reading a client body: parse, bound, validate; large bodies off the event loop.

One worker serves every request on one event loop, so CPU spent on one body is time every
other request waits (issue 17 F3: a 31 MiB body of 950,000 tiny messages held the loop for
12 s, /healthz included). Two defences, see docs/security.md:

- bounds (formats/bounds.py): the number of values, counted on the raw bytes before parsing
  → 413; nesting depth → 400; in the client's dialect, before any other work;
- bodies larger than PROXY_INLINE_BODY_BYTES are parsed, bounded, validated and decoded in a
  worker thread, and their translations for every target are prepared there too
  (`translations_warm`), so the loop only moves bytes. Small bodies stay inline: a thread hop
  would cost more than their work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

from executors.base import compaction_memo_key, compaction_translate, translate_for, translation_memo_key
from formats import (
    Dialect,
    EncodeOptions,
    InvalidRequest,
    UnsupportedFeature,
    decode_request,
    validate_request,
)
from formats.bounds import RequestTooLarge, depth_check, values_check
from formats.compaction import has_compaction_items
from formats.tokens import count_tokens
from routing.affinity import session_of
from routing.errors import ErrorCode, ProxyError


@dataclass(slots=True)
class Intake:
    """A read body: the parsed object (None if it did not parse), the error to answer with
    (None if valid), and what was prepared off the loop for a large one."""

    body: dict[str, Any] | None
    error: ProxyError | None = None
    large: bool = False
    session: str | None = None
    memo: dict[str, Any] = field(default_factory=dict)


def body_is_large(raw: bytes) -> bool:
    return len(raw) > settings.PROXY_INLINE_BODY_BYTES


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        values_check(raw)  # before parsing: the parse itself is the work to bound
    except RequestTooLarge as exc:
        raise ProxyError(413, ErrorCode.REQUEST_TOO_LARGE, exc.message) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProxyError(400, ErrorCode.INVALID_REQUEST, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProxyError(400, ErrorCode.INVALID_REQUEST, "request body must be a JSON object")
    return body


def _validate(dialect: Dialect, body: dict[str, Any], raw: bytes, *, count_only: bool) -> None:
    try:
        depth_check(body, raw)
        validate_request(dialect, body, count_tokens=count_only)
    except UnsupportedFeature as exc:
        raise ProxyError(400, ErrorCode.UNSUPPORTED_FIELD, f"{exc.field}: {exc.reason}", param=exc.field) from None
    except InvalidRequest as exc:
        raise ProxyError(400, ErrorCode.INVALID_REQUEST, exc.message, param=exc.field) from None


def body_read(
    dialect: Dialect,
    raw: bytes,
    headers: Mapping[str, str],
    *,
    count_only: bool = False,
    large: bool = False,
    parsed: dict[str, Any] | None = None,
) -> Intake:
    """Parse, bound and validate (sync: inline for small bodies, in a thread for large ones).

    A large body is also decoded to the canonical form and its session derived here, so
    nothing proportional to its size is left for the event loop. `parsed`: a body the caller
    already parsed (a WebSocket frame); it is still bounded and validated.
    """
    try:
        body = _parse(raw) if parsed is None else parsed
    except ProxyError as exc:
        return Intake(None, exc, large)
    try:
        _validate(dialect, body, raw, count_only=count_only)
    except ProxyError as exc:
        return Intake(body, exc, large)
    intake = Intake(body, None, large)
    if large and not count_only:
        intake.session = session_of(dialect, headers, body)
        _decode_into(intake.memo, dialect, body)
    return intake


def _decode_into(memo: dict[str, Any], dialect: Dialect, body: dict[str, Any]) -> None:
    # A body the decoder refuses is left undecoded: the executor decodes it again on the loop
    # and the refusal becomes a 400 naming the field there, like for any other body.
    with contextlib.suppress(UnsupportedFeature, InvalidRequest):
        memo["canonical"] = decode_request(dialect, body)


def expanded_read(dialect: Dialect, body: dict[str, Any]) -> Intake:
    """A body grown from a stored conversation (previous_response_id), decoded off the loop
    like a large one (it is built by the proxy from checked parts: no parsing or bounds)."""
    intake = Intake(body, None, True)
    _decode_into(intake.memo, dialect, body)
    return intake


def translations_warm(
    memo: dict[str, Any], dialect: Dialect, options: Iterable[EncodeOptions], *, compaction: bool = False
) -> None:
    """Prepare, off the loop, what the executors would compute from a large body: its
    translation to every other dialect for each target's options (UpstreamCall.body_for reads
    them from the memo), and the rough prompt size. A compaction request, or one carrying
    compaction items, gets its emulated form for every dialect instead."""
    canonical = memo.get("canonical")
    if canonical is None:
        return
    if compaction or has_compaction_items(canonical):
        _compaction_warm(memo, canonical, options, summarise=compaction)
        memo["approx_tokens"] = count_tokens(canonical, exact=False)
        return
    for target in Dialect:
        if target is dialect:
            continue
        for opts in {translation_memo_key(target, o): o for o in options}.values():
            try:
                memo[translation_memo_key(target, opts)] = translate_for(canonical, target, opts)
            except (UnsupportedFeature, InvalidRequest):
                continue  # the executor raises it again on the loop, as a 400 naming the field
    memo["approx_tokens"] = count_tokens(canonical, exact=False)


def _compaction_warm(
    memo: dict[str, Any], canonical: dict[str, Any], options: Iterable[EncodeOptions], *, summarise: bool
) -> None:
    for target in Dialect:
        for opts in {compaction_memo_key(target, o, summarise=summarise): o for o in options}.values():
            try:
                memo[compaction_memo_key(target, opts, summarise=summarise)] = compaction_translate(
                    canonical, target, opts, summarise=summarise
                )
            except (UnsupportedFeature, InvalidRequest):
                continue  # raised again by the executor, as a 400 naming the field
