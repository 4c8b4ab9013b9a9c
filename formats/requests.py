"""Request translation entry points: client body -> canonical -> upstream body."""

from __future__ import annotations

from ._common import DEFAULT_OPTIONS, RS_ANTHROPIC, EncodeOptions, input_items
from ._core import Dialect, JSONDict, UnsupportedFeature
from .chat_request import decode_chat_request, encode_chat_request
from .messages_request import decode_messages_request, encode_messages_request
from .validate import validate_request


def decode_request(dialect: Dialect, body: JSONDict) -> JSONDict:
    """Client body in ``dialect`` -> canonical Responses request (validated first)."""
    validate_request(dialect, body)
    if dialect is Dialect.CHAT:
        return decode_chat_request(body)
    if dialect is Dialect.MESSAGES:
        return decode_messages_request(body)
    # Responses is the hub form: a shallow copy so callers may edit it safely.
    return dict(body)


def _encode_responses_request(c: JSONDict) -> JSONDict:
    if c.get("stop"):
        raise UnsupportedFeature("stop", "the Responses API has no stop sequences")
    body = {k: v for k, v in c.items() if k != "stop"}
    if isinstance(c.get("input"), list):
        kept = []
        for item in input_items(c):
            # Anthropic-signed thinking cannot be verified by an OpenAI upstream
            # (docs/protocols/translation.md#messages-to-responses).
            if item.get("type") == "reasoning" and str(item.get("id", "")).startswith(RS_ANTHROPIC):
                continue
            kept.append(item)
        body["input"] = kept
    return body


def encode_request(canonical: JSONDict, dialect: Dialect, *, options: EncodeOptions | None = None) -> JSONDict:
    """Canonical Responses request -> upstream body in ``dialect``.

    Raises UnsupportedFeature for constructs the target cannot express
    (docs/protocols/translation.md#rejected-or-dropped).
    """
    opts = options or DEFAULT_OPTIONS
    if dialect is Dialect.CHAT:
        return encode_chat_request(canonical, opts)
    if dialect is Dialect.MESSAGES:
        return encode_messages_request(canonical, opts)
    return _encode_responses_request(canonical)
