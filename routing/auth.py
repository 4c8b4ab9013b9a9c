"""Client-key authentication for every surface (Bearer or x-api-key)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from accounts.selectors import KeyInfo, client_key_lookup
from routing.errors import ErrorCode, ProxyError

_MAX_KEY_LENGTH = 200


def client_key_from_headers(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization") or headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key") or headers.get("X-Api-Key")
    return key.strip() if key and key.strip() else None


async def client_authenticate(headers: Mapping[str, str]) -> KeyInfo:
    raw = client_key_from_headers(headers)
    if raw is None:
        raise ProxyError(401, ErrorCode.INVALID_CLIENT_KEY, "missing API key: send Authorization: Bearer <key>")
    # Reject absurd values before hashing or touching any cache or database.
    if len(raw) > _MAX_KEY_LENGTH or not raw.isascii():
        raise ProxyError(401, ErrorCode.INVALID_CLIENT_KEY, "invalid API key")
    info = await client_key_lookup(raw)
    if info is None:
        raise ProxyError(401, ErrorCode.INVALID_CLIENT_KEY, "invalid API key")
    if not info.usable(time.time()):
        raise ProxyError(401, ErrorCode.INVALID_CLIENT_KEY, "this API key is disabled or expired")
    return info
