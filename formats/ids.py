"""Identifier helpers.

Upstream ids are never rewritten where a client sends them back (call ids). Response ids
are *derived* from the upstream's id (``chatcmpl-X`` -> ``resp_X`` -> ``msg_X``) so one
response keeps one recognisable id across dialects and golden tests stay deterministic;
only when the upstream gives none is a random id synthesised with the target's prefix.
"""

from __future__ import annotations

import secrets

_PREFIXES = ("chatcmpl-", "resp_", "msg_", "rs_", "fc_", "ctc_")


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def strip_prefix(some_id: str) -> str:
    for p in _PREFIXES:
        if some_id.startswith(p):
            return some_id[len(p) :]
    return some_id


def derive_id(prefix: str, source_id: object) -> str:
    if isinstance(source_id, str) and source_id:
        return prefix + strip_prefix(source_id)
    return new_id(prefix)
