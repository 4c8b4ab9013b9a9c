"""Local token counting for Anthropic ``count_tokens`` and for usage an upstream omitted.

Text is encoded with OpenAI's ``o200k_base`` BPE through ``bpe-openai`` (a Rust tokenizer
that ships the BPE ranks inside its wheel, so nothing is downloaded at run time; plain
``tiktoken`` fetches its BPE files from the network on first use, which this deployment
cannot do). The count is exact for OpenAI-family text and an estimate for Claude models,
whose tokenizer is not public: callers must treat the result as approximate.

Structure overhead follows OpenAI's published chat accounting (a few tokens per message,
per tool), and images count a flat 765 tokens (a 1024x1024 high-detail image) because the
dimensions are not known without decoding the image. If the tokenizer package is missing,
a documented fallback of ceil(utf8_bytes / 4) per text is used.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ._common import input_items
from ._core import JSONDict, dumps_str

PER_MESSAGE = 3  # role/separator tokens per message (OpenAI chat accounting)
PER_REQUEST = 3  # the assistant-reply priming tokens
PER_TOOL = 8  # wrapper tokens around each tool definition
IMAGE_TOKENS = 765
FILE_TOKENS = 1500  # a PDF page-ish guess for inline files; they cannot be parsed here


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], int]:
    try:
        import bpe_openai  # type: ignore[import-untyped,unused-ignore]

        enc = bpe_openai.get_encoding("o200k_base")

        def count(text: str) -> int:
            # encode_ordinary: text that looks like a special token is still plain text.
            return len(enc.encode_ordinary(text))

        return count
    except Exception:
        return lambda text: (len(text.encode()) + 3) // 4


# The tokenizer refuses long inputs (bpe-openai: 1,000,000 characters, 200,000 tokens per
# call), and one long call holds the GIL. So long texts are counted in pieces cut just before
# a space: o200k's pre-tokens carry their leading space, so such a cut changes no token.
_PIECE = 32_768


def _pieces(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    while len(text) - start > _PIECE:
        cut = text.rfind(" ", start + _PIECE // 2, start + _PIECE)
        if cut <= start:  # no space in reach (one giant word): cut anywhere, off by a token at most
            cut = start + _PIECE
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def count_text(text: str) -> int:
    if not text:
        return 0
    count = _encoder()
    if len(text) <= _PIECE:
        return count(text)
    return sum(count(piece) for piece in _pieces(text))


def _approx_text(text: str) -> int:
    return (len(text.encode()) + 3) // 4 if text else 0


# The exact tokenizer's tables cost ~130 MB of memory and ~0.6 s to load, so callers that
# only need a rough figure (an upstream that omitted usage, the provisional prompt size in
# Anthropic's message_start) pass exact=False and get bytes/4 instead.


def _count_content(content: Any, count_text: Callable[[str], int]) -> int:
    if isinstance(content, str):
        return count_text(content)
    n = 0
    for p in content if isinstance(content, list) else []:
        if not isinstance(p, dict):
            continue
        typ = p.get("type")
        if typ in ("input_image", "image"):
            n += IMAGE_TOKENS
        elif typ in ("input_file", "document"):
            n += FILE_TOKENS
        else:
            for key in ("text", "refusal"):
                if isinstance(p.get(key), str):
                    n += count_text(p[key])
    return n


def count_tokens(canonical_request: JSONDict, *, exact: bool = True) -> int:
    """Estimated prompt tokens of a canonical (Responses) request (exact=False: bytes/4)."""
    count_text = globals()["count_text"] if exact else _approx_text
    n = PER_REQUEST
    if isinstance(canonical_request.get("instructions"), str):
        n += PER_MESSAGE + count_text(canonical_request["instructions"])
    for item in input_items(canonical_request):
        typ = item.get("type")
        n += PER_MESSAGE
        if typ == "message":
            n += _count_content(item.get("content"), count_text)
        elif typ == "function_call":
            n += count_text(str(item.get("name") or "")) + count_text(str(item.get("arguments") or ""))
        elif typ == "custom_tool_call":
            n += count_text(str(item.get("name") or "")) + count_text(str(item.get("input") or ""))
        elif typ in ("function_call_output", "custom_tool_call_output"):
            n += _count_content(item.get("output"), count_text)
        elif typ == "reasoning":
            # Encrypted reasoning is opaque; only the visible summary can be counted.
            n += sum(count_text(str(s.get("text") or "")) for s in item.get("summary") or [] if isinstance(s, dict))
        else:
            n += count_text(dumps_str(item))
    for tool in canonical_request.get("tools") or []:
        if isinstance(tool, dict):
            n += PER_TOOL + count_text(dumps_str(tool))
    return n
