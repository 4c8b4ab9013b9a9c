"""One request id per API request, carried by a contextvar so every log line has it.

The id is generated here (a UUID4: it is also the usage record's unique key, see
`UsageRecord.request_id`) and returned to the client as `x-request-id` on every API response.

A client may send its own `x-request-id`. It is *not* used as the record key: that key is
unique and inserted idempotently (`ignore_conflicts`), so a client reusing an id (retries
commonly do) would silently erase its own usage records, and a non-UUID would break the
batch insert. A sane client id (<= 64 chars of [A-Za-z0-9._-]) is instead kept as the
correlation id `client_request_id`: on every log line and echoed as `x-client-request-id`
(the same split OpenAI's API makes). Anything else the client sends is ignored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

_request_id: ContextVar[str] = ContextVar("request_id", default="")
_client_request_id: ContextVar[str] = ContextVar("client_request_id", default="")

_SANE = re.compile(rb"[A-Za-z0-9._-]{1,64}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def request_id_get() -> str:
    """The current request's id ("" outside a request)."""
    return _request_id.get()


def client_request_id_get() -> str:
    return _client_request_id.get()


def request_id_current() -> str:
    """The id bound by `with_request_id`, or a fresh one when called outside it (direct calls
    in tests). The fresh one is deliberately not bound: a caller running several requests in
    one context would otherwise give them all the same id, and the usage buffer keeps only
    one record per id."""
    return _request_id.get() or str(uuid.uuid4())


def client_request_id_parse(raw: bytes | str | None) -> str:
    """The client's id if it is a sane token, else "" (never echo arbitrary bytes)."""
    if raw is None:
        return ""
    value = raw.encode("latin-1", "replace") if isinstance(raw, str) else raw
    return value.decode("ascii") if _SANE.fullmatch(value) else ""


async def with_request_id(app: ASGIApp, scope: Scope, receive: Any, send: Any) -> None:
    """Run one HTTP request with its ids bound, adding them to the response headers.

    Done at the ASGI layer (not in each view) so that every API answer carries the header:
    proxied success, error, stream, /v1/models, Django's 404 and ninja's 500 handler alike.
    The contextvars set here are copied into the tasks Django's handler creates.
    """
    client_id = ""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            client_id = client_request_id_parse(value)
            break
    rid = str(uuid.uuid4())
    t1, t2 = _request_id.set(rid), _client_request_id.set(client_id)
    extra = [(b"x-request-id", rid.encode())]
    if client_id:
        extra.append((b"x-client-request-id", client_id.encode()))

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    # Only the start message needs the ids: a streaming sender may send the body messages
    # straight to the server's send (proxy_project/asgi.py), one coroutine fewer per event.
    send_with_id.__wrapped__ = send  # type: ignore[attr-defined]
    try:
        await app(scope, receive, send_with_id)
    finally:
        _request_id.reset(t1)
        _client_request_id.reset(t2)


def request_id_bind(client_raw: bytes | str | None = None) -> tuple[str, Callable[[], None]]:
    """Bind a fresh request id (and the client's correlation id) in the current context, for
    work that is not one HTTP request: each turn on a WebSocket. Returns the id and a reset."""
    rid = str(uuid.uuid4())
    t1, t2 = _request_id.set(rid), _client_request_id.set(client_request_id_parse(client_raw))

    def reset() -> None:
        _request_id.reset(t1)
        _client_request_id.reset(t2)

    return rid, reset
