"""Upstream WebSocket transport for Codex accounts (docs/protocols/codex.md#transport-http-and-websocket).

`GET {base}/responses` upgraded to a WebSocket with the HTTP fingerprint headers plus the
`OpenAI-Beta` flag; the request is one `{"type":"response.create", …body…}` text frame and
every server text frame is one Responses event (the same objects as SSE `data:`). The frames
are handed back as SseEvent so the HTTP path's filter, handshake buffering and error mapping
run unchanged (executor.py). A failed handshake is remembered per (account, model) in the
state store so later requests go straight to HTTP SSE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.protocol import State

from executors.base import UpstreamSession, UpstreamStreamError
from formats import SseEvent
from statestore import get_store

log = logging.getLogger(__name__)

WS_BETA = "responses_websockets=2026-02-06"
FALLBACK_TTL = 600.0  # a refused handshake pins (account, model) to HTTP SSE this long
OPEN_TIMEOUT = 15.0
READ_TIMEOUT = 300.0  # the CLI's idle timeout (docs/protocols/codex.md#transport-http-and-websocket)
MAX_FRAME = 32 * 1024 * 1024  # a response.completed frame carries the whole output
# Headers that describe an HTTP body; meaningless on an upgrade request.
_HTTP_ONLY = frozenset({"accept", "content-type", "accept-encoding", "content-length"})


SLOT = "codex"  # this provider's slot in an UpstreamSession


class KeptSocket:
    """One upstream socket and what it holds: the backend keeps the last response of a
    socket in memory (docs/protocols/codex.md#transport-http-and-websocket), so a turn that continues
    `last_response_id` on the same
    socket may send only its new input items.

    With a session (a client WebSocket) the socket outlives the request and serves the
    conversation's later turns; without one it is closed when the request ends. A socket whose
    response did not reach a terminal event (cut, abandoned) is closed: its state is unknown.
    """

    __slots__ = ("account_id", "conn", "headers", "last_response_id", "opened_at", "session")

    def __init__(
        self, conn: ClientConnection, *, account_id: int, headers: dict[str, str], session: UpstreamSession | None
    ) -> None:
        self.conn = conn
        self.account_id = account_id
        self.headers = headers
        self.session = session
        self.opened_at = time.monotonic()
        self.last_response_id: str | None = None
        if session is not None:
            session.slots[SLOT] = self

    @property
    def open(self) -> bool:
        return self.conn.state is State.OPEN

    def age(self) -> float:
        return time.monotonic() - self.opened_at

    async def release(self, terminal: Mapping[str, Any] | None) -> None:
        """The request on this socket ended; `terminal` is its terminal event, if it had one."""
        if self.session is None or terminal is None or not self.open:
            await self.aclose()
            return
        response = terminal.get("response")
        completed = terminal.get("type") == "response.completed" and isinstance(response, Mapping)
        response_id = response.get("id") if completed and isinstance(response, Mapping) else None
        self.last_response_id = response_id if isinstance(response_id, str) and response_id else None

    async def aclose(self) -> None:
        if self.session is not None and self.session.slots.get(SLOT) is self:
            del self.session.slots[SLOT]
        self.last_response_id = None
        await self.conn.close()


class WsHandshakeFailed(Exception):
    """The upgrade did not happen (refused connection, non-101 answer, timeout)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


def ws_url(base_url: str) -> str:
    """`https://host/x` → `wss://host/x/responses` (`http` → `ws`)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/responses"


def _fallback_key(account_id: int, model: str) -> str:
    return f"codex:ws_fallback:{account_id}:{model}"


async def ws_recently_failed(account_id: int, model: str) -> bool:
    try:
        return await get_store().get(_fallback_key(account_id, model)) is not None
    except Exception:  # the hint must never fail a request
        log.warning("codex: could not read the WebSocket fallback mark", exc_info=True)
        return False


async def ws_remember_failure(account_id: int, model: str, reason: str, ttl: float = FALLBACK_TTL) -> None:
    try:
        await get_store().set(_fallback_key(account_id, model), reason.encode()[:200], ttl=ttl)
    except Exception:
        log.warning("codex: could not store the WebSocket fallback mark", exc_info=True)


async def ws_open(url: str, headers: Mapping[str, str]) -> tuple[ClientConnection, dict[str, str]]:
    """Open the socket with the HTTP fingerprint; return it and the handshake response headers."""
    upgrade = {k: v for k, v in headers.items() if k.lower() not in _HTTP_ONLY}
    upgrade["openai-beta"] = WS_BETA
    try:
        conn = await connect(
            url,
            additional_headers=upgrade,
            user_agent_header=None,  # the fingerprint's user-agent is in `upgrade`
            proxy=None,  # like the HTTP client (trust_env=False)
            compression="deflate",
            open_timeout=OPEN_TIMEOUT,
            max_size=MAX_FRAME,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise WsHandshakeFailed(f"handshake answered HTTP {status}", status) from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise WsHandshakeFailed(f"handshake failed ({type(exc).__name__})") from None
    response = conn.response
    resp_headers = {k.lower(): v for k, v in response.headers.raw_items()} if response is not None else {}
    return conn, resp_headers


async def ws_events(conn: ClientConnection) -> AsyncGenerator[SseEvent, None]:
    """Server text frames as SseEvent (no `event:` name: the filter takes it from `type`).

    A clean close simply ends the generator (the caller reports a missing terminal event);
    an abnormal close or a silent socket is a cut stream.
    """
    while True:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                message = await conn.recv()
        except ConnectionClosedError as exc:
            raise UpstreamStreamError(
                f"Codex WebSocket closed abnormally (code {exc.rcvd.code if exc.rcvd else 'none'})",
                "upstream_stream_cut",
            ) from None
        except ConnectionClosedOK:
            return
        except TimeoutError:
            raise UpstreamStreamError("Codex WebSocket went silent", "upstream_stream_cut") from None
        if isinstance(message, bytes):
            continue  # the backend speaks text frames only
        yield SseEvent(None, message.encode())
