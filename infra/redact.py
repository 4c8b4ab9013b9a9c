"""Secret redaction for any text that leaves the process or is stored: log lines, and every
upstream text the failure layer relays to a client, stores in a usage record or an account's
last error, or shows in the admin (executors.base.UpstreamError redacts at construction).

Patterns catch what looks like a credential whatever the source; `redact_values` also masks
exact secret values an account holds (an upstream may echo a key of any shape).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Client keys (sk-team-…) and upstream keys (sk-…, sk-proj-…, sk-ant-…), GitLab tokens
# (glpat-…, gloas-…, …), bearer credentials, JWTs (Codex/ChatGPT access and id tokens), and
# "key=…"/"token: …" assignments.
_SECRET = re.compile(
    r"(?P<sk>\bsk-[A-Za-z0-9_-]{6,})"
    r"|(?P<gl>\bgl[a-z]{2,5}-[A-Za-z0-9_-]{10,})"
    r"|(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)"
)
# Shorter values are too likely to be ordinary words to mask verbatim.
_MIN_VALUE_LENGTH = 8


def _mask(match: re.Match[str]) -> str:
    if match.group("bearer"):
        return match.group("bearer") + "[REDACTED]"
    value = match.group(0)
    # Keep a short, non-secret prefix (sk-team-, glpat-) so a reader knows what it was.
    return value[: value.find("-") + 1] + "[REDACTED]" if not match.group("jwt") else "[REDACTED-JWT]"


def redact(text: str) -> str:
    """`text` with anything that looks like a credential masked."""
    return _SECRET.sub(_mask, text) if text else text


def redact_values(text: str, values: Iterable[str]) -> str:
    """`text` with each of the given secret values masked, then the patterns."""
    for value in values:
        if len(value) >= _MIN_VALUE_LENGTH and value in text:
            text = text.replace(value, "[REDACTED]")
    return redact(text)


def secret_strings(secret: object) -> list[str]:
    """Every string inside a credential's secret (nested dicts and lists included)."""
    out: list[str] = []
    if isinstance(secret, str):
        out.append(secret)
    elif isinstance(secret, dict):
        for value in secret.values():
            out.extend(secret_strings(value))
    elif isinstance(secret, list | tuple):
        for value in secret:
            out.extend(secret_strings(value))
    return out
