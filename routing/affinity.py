"""Session affinity: one conversation sticks to one account (prompt-cache hits, and the
provider state of that account), falling back when the bound account is unavailable.

The session comes from what the client says (session headers, `prompt_cache_key`, Claude
Code's metadata, Codex's client_metadata), else from a hash of the conversation's opening
(instructions + first message), which stays the same on every turn of a stateless client.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings

from formats import Dialect
from statestore import StateStore

_SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id", "x-session-id", "conversation-id")


def _explicit(headers: Mapping[str, str], body: dict[str, Any]) -> str | None:
    for name in _SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value
    for key in ("prompt_cache_key",):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    client_meta = body.get("client_metadata")
    if isinstance(client_meta, dict):
        for key in ("session_id", "thread_id"):
            if isinstance(client_meta.get(key), str) and client_meta[key]:
                return str(client_meta[key])
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        # Claude Code: user_id is a JSON string carrying session_id.
        try:
            session = orjson.loads(metadata["user_id"]).get("session_id")
        except (orjson.JSONDecodeError, AttributeError):
            session = None
        if isinstance(session, str) and session:
            return session
    return None


def _opening(dialect: Dialect, body: dict[str, Any]) -> list[Any] | None:
    if dialect is Dialect.RESPONSES:
        items = body.get("input")
        first = items if isinstance(items, str) else (items[0] if isinstance(items, list) and items else None)
        return None if first is None else [body.get("instructions"), first]
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    if dialect is Dialect.MESSAGES:
        return [body.get("system"), messages[0]]
    system = [m for m in messages[:2] if isinstance(m, dict) and m.get("role") in ("system", "developer")]
    first_user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    return [system, first_user]


def session_of(dialect: Dialect, headers: Mapping[str, str], body: dict[str, Any]) -> str | None:
    explicit = _explicit(headers, body)
    if explicit:
        return "s:" + explicit[:200]
    opening = _opening(dialect, body)
    if opening is None:
        return None
    digest = hashlib.blake2b(orjson.dumps(opening, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()
    return "h:" + digest


def affinity_key(key_id: int, model: str, session: str) -> str:
    return f"aff:{key_id}:{model}:{session}"


def affinity_parse(raw: bytes | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def affinity_get(store: StateStore, *, key_id: int, model: str, session: str) -> int | None:
    return affinity_parse(await store.get(affinity_key(key_id, model, session)))


async def affinity_bind(store: StateStore, *, key_id: int, model: str, session: str, account_id: int) -> None:
    await store.set(affinity_key(key_id, model, session), str(account_id).encode(), ttl=settings.AFFINITY_TTL_SECONDS)
