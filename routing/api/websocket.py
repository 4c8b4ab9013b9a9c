"""Client WebSocket on `/v1/responses`: the Responses WebSocket that Codex CLI speaks with
`supports_websockets = true` (docs/protocols/responses-websocket.md).

A plain ASGI route beside the Django app (django-ninja has no WebSocket views; why not Django
Channels: docs/architecture.md). The upgrade is authenticated with the same key lookup as
HTTP (a refused key is an HTTP 401 answer to the upgrade, which the CLI reports as such).
Then every `response.create` text frame is one turn through `routing.proxy.ws_turn_handle`,
the HTTP path itself: key limits reserved and settled, dispatch with failover before the
first byte, one usage record. Events go back one JSON object per text frame; a refused turn
is one `{"type":"error","status":…}` frame and the socket stays usable.

Frames are read by a reader task all the time, so a client that goes away mid-turn cancels
the turn at once (recorded as a client disconnect, upstream closed). Turns run one at a time
in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from django.conf import settings

from observability.metrics import ws_socket_closed, ws_socket_opened
from observability.requestid import request_id_bind
from routing.conversation import Conversation
from routing.errors import ErrorCode, ProxyError
from routing.proxy import Reply, ws_turn_handle, ws_upgrade_check

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The service's own wording for its 60-minute cap (docs/protocols/responses-websocket.md).
LIMIT_CODE = "websocket_connection_limit_reached"
LIMIT_MESSAGE = (
    "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue."
)
_MAX_QUEUED = 16  # frames waiting behind a running turn (the service allows 16 in flight)
_CLOSE_NORMAL, _CLOSE_GOING_AWAY, _CLOSE_POLICY, _CLOSE_TOO_BIG = 1000, 1001, 1008, 1009


def error_frame(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """The service's error message on a socket: the HTTP status and error object of the same
    failure over HTTP, plus its headers (e.g. retry-after)."""
    frame: dict[str, Any] = {"type": "error", "status": status, "error": error}
    if headers:
        frame["headers"] = headers
    return orjson.dumps(frame)


def _reply_error_frame(reply: Reply) -> bytes:
    try:
        body = orjson.loads(reply.body)
        error = body.get("error") if isinstance(body, dict) else None
    except orjson.JSONDecodeError:
        error = None
    if not isinstance(error, dict):
        error = {"type": "server_error", "message": "request failed", "code": None, "param": None}
    extra = {k: v for k, v in reply.headers.items() if k != "content-type"}
    return error_frame(reply.status, error, extra)


def _proxy_error_frame(exc: ProxyError) -> bytes:
    error_type = "server_error" if exc.status >= 500 else "invalid_request_error"
    return error_frame(exc.status, {"type": error_type, "code": exc.code, "message": exc.message, "param": exc.param})


async def responses_websocket(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """ASGI entry for a `websocket` scope on /v1/responses."""
    if (await receive())["type"] != "websocket.connect":
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    refused = await ws_upgrade_check(headers)
    if refused is not None:
        await reject_upgrade(scope, send, refused.status, refused.headers, refused.body)
        return
    await send({"type": "websocket.accept"})
    socket = ClientSocket(headers, receive, send)
    ws_socket_opened()
    try:
        await socket.serve()
    finally:
        ws_socket_closed(socket.conversation.turns)


async def reject_upgrade(
    scope: MutableMapping[str, Any], send: Send, status: int, headers: dict[str, str], body: bytes
) -> None:
    """Answer the upgrade with a plain HTTP response (the ASGI `websocket.http.response`
    extension); servers without it can only close, which the client sees as a 403."""
    if "websocket.http.response" in scope.get("extensions", {}):
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "websocket.http.response.start", "status": status, "headers": raw})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": _CLOSE_POLICY})


class ClientSocket:
    def __init__(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        self.headers = headers
        self._receive = receive
        self._send = send
        self.conversation = Conversation()
        self.opened = time.monotonic()
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._closed = False

    async def serve(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            while not self._closed:
                message = await self._next_message()
                if message is None:
                    break
                await self._on_message(message)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self.conversation.aclose()

    async def _read(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "websocket.disconnect":
                    break
                if self._inbox.qsize() >= _MAX_QUEUED:
                    await self._close(_CLOSE_POLICY, "too many frames queued behind the running response")
                    break
                self._inbox.put_nowait(message)
        finally:
            self._gone.set()
            self._inbox.put_nowait(None)

    async def _next_message(self) -> Message | None:
        age = time.monotonic() - self.opened
        idle_budget = settings.WS_MAX_AGE_SECONDS + settings.WS_IDLE_GRACE_SECONDS - age
        try:
            async with asyncio.timeout(max(idle_budget, 0.0)):
                return await self._inbox.get()
        except TimeoutError:
            # Past the cap and idle: nothing will ever be served here again.
            await self._close(_CLOSE_GOING_AWAY, "connection lifetime reached")
            return None

    async def _on_message(self, message: Message) -> None:
        text = message.get("text")
        if text is None:
            await self._send_text(_proxy_error_frame(_bad("binary frames are not supported; send JSON text")))
            return
        raw = text.encode()
        if len(raw) > settings.PROXY_MAX_BODY_BYTES:
            err = ProxyError(413, ErrorCode.REQUEST_TOO_LARGE, "message is larger than this proxy accepts")
            await self._send_text(_proxy_error_frame(err))
            await self._close(_CLOSE_TOO_BIG, "message too big")
            return
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await self._send_text(_proxy_error_frame(_bad("message is not valid JSON")))
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "response.create":
            await self._response_create(raw, frame)
        elif kind == "response.processed":
            return  # an acknowledgement (newer CLIs); nothing to do
        else:
            await self._send_text(_proxy_error_frame(_bad(f"unsupported message type {str(kind)[:64]!r}")))

    async def _response_create(self, raw: bytes, frame: dict[str, Any]) -> None:
        if time.monotonic() - self.opened >= settings.WS_MAX_AGE_SECONDS:
            limit = {"type": "invalid_request_error", "code": LIMIT_CODE, "message": LIMIT_MESSAGE, "param": None}
            await self._send_text(error_frame(400, limit))
            await self._close(_CLOSE_NORMAL, "connection lifetime reached")
            return
        body = {k: v for k, v in frame.items() if k != "type"}
        body["stream"] = True  # implicit on a socket: events are always streamed
        self.conversation.turns += 1
        turn = asyncio.create_task(self._turn(raw, body))
        gone = asyncio.create_task(self._gone.wait())
        try:
            await asyncio.wait({turn, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not turn.done():
            turn.cancel()  # the client went away: stop the upstream, record the disconnect
        with contextlib.suppress(asyncio.CancelledError):
            await turn
        if self._gone.is_set():
            self._closed = True

    async def _turn(self, raw: bytes, body: dict[str, Any]) -> None:
        _, reset = request_id_bind(self.headers.get("x-client-request-id"))
        try:
            try:
                reply = await ws_turn_handle(
                    headers=self.headers, raw_frame=raw, body=body, conversation=self.conversation
                )
            except Exception:  # a bug: the turn is recorded (finisher); the client gets a 500 frame
                log.exception("client WebSocket turn failed")
                internal = {"type": "server_error", "code": ErrorCode.UPSTREAM_ERROR, "message": "internal proxy error"}
                await self._send_text(error_frame(500, internal))
                return
            if reply.stream is None:
                await self._send_text(_reply_error_frame(reply))
                return
            stream = reply.stream
            try:
                async for frame in stream:
                    await self._send_text(frame)
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
                if reply.abandon is not None:
                    reply.abandon()  # no-op once the stream finished its own accounting
        finally:
            reset()

    async def _send_text(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": data.decode()})
        except Exception:  # the client is gone (servers raise on a send after the close)
            self._closed = True
            self._gone.set()  # cancels the running turn: recorded as a client disconnect

    async def _close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


def _bad(message: str) -> ProxyError:
    return ProxyError(400, ErrorCode.INVALID_REQUEST, message)
