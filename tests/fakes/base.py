"""Framework for realistic fake upstream HTTP servers (tests and demos).

A fake is a raw ASGI app (`FakeApp` subclass, no web framework) served by uvicorn on
127.0.0.1 in a background thread (`FakeServer`). Every fake shares one control plane
(`FakeControl`): a fault queue, request recording and stream counters, reachable in-process
(`server.faults.push(...)`) and over HTTP under `/_fake/` so a fake running in another
process (demo, e2e) can be driven too (`RemoteFake`).

Faults are applied by the framework, not by each route, so every fake gets the same
failure modes for free: HTTP error status, slow first byte, reset/close without a response,
a mid-stream cut, malformed SSE, an error as the first stream event, and pacing overrides.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import signal
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypedDict, TypeVar

import orjson
import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FaultKind = Literal["ok", "status", "reset", "close", "cut", "malformed", "stream_error"]
FAULT_KINDS: frozenset[str] = frozenset({"ok", "status", "reset", "close", "cut", "malformed", "stream_error"})

HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One injected failure, consumed by the next `times` requests matching path/model.

    kind:
      ok           normal answer, modified only by delay/chunks/interval (slow first byte, pacing)
      status       HTTP `status` with `body` (dict → JSON, str → raw with `content_type`,
                   None → the fake's own error body for that status) and extra `headers`
      reset        TCP RST before any byte of the response
      close        orderly close (FIN) before any byte of the response
      cut          send `after` stream events (or half a JSON body), then drop the connection
                   without the terminating chunk
      malformed    after `after` events send a non-JSON `data:` line (or raw garbage bytes
                   when `garbage`), then carry on with the stream
      stream_error HTTP 200 stream that sends `after` normal events (0: none), then the error
                   object `body` as its last event
    """

    kind: FaultKind = "ok"
    status: int = 500
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    after: int = 0
    garbage: bool = False
    chunks: int | None = None
    interval: float | None = None
    path: str | None = None
    model: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.times < 1:
            raise ValueError("times must be >= 1")

    # Small constructors so tests read like the failure they describe.
    @classmethod
    def http(
        cls,
        status: int,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> Fault:
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["retry-after"] = f"{retry_after:g}"
        return cls(kind="status", status=status, body=body, headers=hdrs)

    @classmethod
    def html(cls, status: int = 502, page: str = HTML_502) -> Fault:
        return cls(kind="status", status=status, body=page, content_type="text/html")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        return cls(kind="ok", delay=delay)

    @classmethod
    def reset(cls) -> Fault:
        return cls(kind="reset")

    @classmethod
    def close(cls) -> Fault:
        return cls(kind="close")

    @classmethod
    def cut(cls, after: int) -> Fault:
        return cls(kind="cut", after=after)

    @classmethod
    def malformed(cls, after: int = 1, *, garbage: bool = False) -> Fault:
        return cls(kind="malformed", after=after, garbage=garbage)

    @classmethod
    def stream_error(cls, error: dict[str, Any] | None = None, *, after: int = 0) -> Fault:
        return cls(kind="stream_error", body=error, after=after)

    @classmethod
    def pacing(cls, *, chunks: int | None = None, interval: float | None = None) -> Fault:
        return cls(kind="ok", chunks=chunks, interval=interval)

    def where(self, *, path: str | None = None, model: str | None = None, times: int | None = None) -> Fault:
        """Copy with request filters, e.g. `Fault.cut(3).where(model="m", times=2)`."""
        return dataclasses.replace(
            self,
            path=path if path is not None else self.path,
            model=model if model is not None else self.model,
            times=times if times is not None else self.times,
        )

    def matches(self, path: str, model: str | None) -> bool:
        return (self.path is None or self.path == path) and (self.model is None or self.model == model)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


class FaultQueue:
    """Thread-safe FIFO of faults; tests push from their thread, the server takes in its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Fault] = []

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self._items.extend(dataclasses.replace(f) for f in faults)

    def take(self, path: str, model: str | None) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._items):
                if fault.matches(path, model):
                    fault.times -= 1
                    if fault.times == 0:
                        del self._items[i]
                    return dataclasses.replace(fault, times=1)
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return [dataclasses.replace(f) for f in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# --------------------------------------------------------------------- control plane


class RecordedRequest(TypedDict):
    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    received_at: float


class Cancellation(TypedDict):
    path: str
    model: str | None
    events_sent: int
    cancelled_at: float


class FakeControl:
    """Shared state of one fake: faults, recorded requests, stream counters.

    All mutation happens under one condition variable, so tests can block on
    `wait_for(lambda c: c.cancelled_streams == 1)` instead of sleeping.

    `cancelled_streams` counts answers the client abandoned before the fake finished them
    (mid-stream, or during a slow-first-byte delay); fault-driven cuts are not counted.
    """

    def __init__(self) -> None:
        self.faults = FaultQueue()
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._cancellations: list[Cancellation] = []
        self._violations: list[Violation] = []
        self.open_streams = 0
        self.started_streams = 0
        self.completed_streams = 0
        self.cancelled_streams = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def cancellations(self) -> list[Cancellation]:
        with self._cond:
            return list(self._cancellations)

    @property
    def violations(self) -> list[Violation]:
        """Every answer that enforced a rule of docs/fake-rules.md, in order."""
        with self._cond:
            return list(self._violations)

    def violated(self, entry: Violation) -> None:
        with self._cond:
            self._violations.append(entry)
            self._cond.notify_all()

    def record(self, req: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    def update(self, fn: Callable[[FakeControl], None]) -> None:
        with self._cond:
            fn(self)
            self._cond.notify_all()

    def cancelled(self, entry: Cancellation) -> None:
        def apply(c: FakeControl) -> None:
            c.cancelled_streams += 1
            c._cancellations.append(entry)

        self.update(apply)

    def wait_for(self, predicate: Callable[[FakeControl], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "open_streams": self.open_streams,
                "started_streams": self.started_streams,
                "completed_streams": self.completed_streams,
                "cancelled_streams": self.cancelled_streams,
                "cancellations": list(self._cancellations),
                "pending_faults": len(self.faults),
                "requests": len(self._requests),
                "violations": list(self._violations),
            }

    def reset(self) -> None:
        self.faults.clear()
        with self._cond:
            self._requests.clear()
            self._cancellations.clear()
            self._violations.clear()
            self.started_streams = self.completed_streams = self.cancelled_streams = 0
            self._cond.notify_all()


# ------------------------------------------------------------- requests & responses


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names; last value wins
    body: bytes
    json: Any  # parsed body, or None when absent / not JSON
    json_error: bool  # a body was sent but is not valid JSON
    path_params: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None

    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def chunks(self, default: int) -> int:
        """Content chunk count, honouring a pacing fault."""
        return self.fault.chunks if self.fault and self.fault.chunks else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status=status, body=orjson.dumps(obj), headers=dict(headers or {}))


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One SSE event; `data` is JSON-encoded unless it is already bytes/str."""
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = orjson.dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def _data_only_error(error: dict[str, Any]) -> bytes:
    return sse_event({"error": error})


@dataclass
class SSEResponse:
    """A streamed answer: each item of `events` is flushed as its own body message."""

    events: Iterable[bytes]
    interval: float = 0.0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # None reproduces upstreams that omit it (the Codex backend does).
    content_type: str | None = "text/event-stream; charset=utf-8"
    # How this dialect spells an in-stream error (used by the stream_error fault).
    error_event: Callable[[dict[str, Any]], bytes] = _data_only_error
    model: str | None = None


class HTTPError(Exception):
    """Raised by handlers; becomes a response with `status` and a JSON (or raw) body.

    `rule` names the published rule of the real service this answer enforces (an id from
    docs/fake-rules.md); such answers are logged in `FakeControl.violations`, so a test can
    assert that the proxy never broke a rule (an empty log), whatever the client sent."""

    def __init__(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None, *, rule: str | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.rule = rule

    def response(self) -> Response:
        if isinstance(self.body, str | bytes):
            raw = self.body.encode() if isinstance(self.body, str) else self.body
            return Response(self.status, raw, self.headers, "text/plain; charset=utf-8")
        return json_response(self.body, self.status, self.headers)

    def as_rule(self, rule: str) -> HTTPError:
        """This answer, as the enforcement of `rule`."""
        self.rule = rule
        return self


class Violation(TypedDict):
    rule: str
    path: str
    status: int


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | int | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTTPError:
    return HTTPError(
        status,
        {"error": {"message": message, "type": type, "param": param, "code": code}},
        headers,
    )


# Bodies the real OpenAI API returns for these statuses (502/504 come from Cloudflare).
_OPENAI_STATUS_ERRORS: dict[int, tuple[str, str, str | int | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided: sk-fake***1234. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: (
        "The model `fake-model` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for gpt-4o-mini in organization org-fake on tokens per min (TPM): "
        "Limit 200000, Used 200000, Requested 20. Please try again in 6ms.",
        "tokens",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "cf_bad_gateway", 502),
    503: ("The engine is currently overloaded, please try again later", "server_error", None),
    504: ("Gateway timeout.", "cf_gateway_timeout", 504),
}

RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-limit-tokens": "200000",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-tokens": "6ms",
}


def openai_status_error(status: int) -> HTTPError:
    message, type_, code = _OPENAI_STATUS_ERRORS.get(
        status,
        (f"Upstream returned HTTP {status}.", "server_error" if status >= 500 else "invalid_request_error", None),
    )
    headers = {"retry-after": "1", **RATE_LIMIT_HEADERS} if status == 429 else {}
    return openai_error(status, message, type=type_, code=code, headers=headers)


# ------------------------------------------------------------------------ ASGI app

Handler = Callable[[Request], Awaitable[Response | SSEResponse]]


class _AbortConnection(Exception):
    """Fallback abort: uvicorn closes the socket when the app raises after the response
    started (and would send a 500 before it started)."""


class _QuietAbort(logging.Filter):
    # uvicorn logs every app exception with a traceback. Our deliberate aborts, and streams
    # cancelled by FakeServer.stop() (force exit cancels in-flight tasks), are noise.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _AbortConnection | asyncio.CancelledError)


logging.getLogger("uvicorn.error").addFilter(_QuietAbort())


async def abort_connection(send: Send, *, rst: bool) -> None:
    """Drop the client connection now, bypassing HTTP framing.

    uvicorn hides the transport from ASGI, but `send` is a bound method of its per-request
    cycle object, which holds it. With SO_LINGER=0 the close is a TCP RST; otherwise a FIN.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise _AbortConnection("no transport")
    if rst:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let connection_lost run so uvicorn marks the cycle disconnected and stays quiet
    # about "ASGI callable returned without completing response".
    for _ in range(3):
        await asyncio.sleep(0)


@dataclass
class _Route:
    method: str
    parts: tuple[str, ...]
    handler: Handler


class FakeApp:
    """Raw ASGI app with routing, recording and fault injection. Subclasses add routes."""

    def __init__(self) -> None:
        self.control = FakeControl()
        self._routes: list[_Route] = []
        self.route("POST", "/_fake/faults", self._ctl_push_faults)
        self.route("GET", "/_fake/faults", self._ctl_list_faults)
        self.route("GET", "/_fake/requests", self._ctl_requests)
        self.route("GET", "/_fake/stats", self._ctl_stats)
        self.route("POST", "/_fake/reset", self._ctl_reset)

    # -- hooks for subclasses
    def route(self, method: str, path: str, handler: Handler) -> None:
        """Register `handler`; `{name}` segments match one path segment each."""
        self._routes.append(_Route(method.upper(), tuple(path.strip("/").split("/")), handler))

    def reset(self) -> None:
        """Back to the state right after construction: control plane and settings.
        Subclasses with settings or stored state extend this (and call super)."""
        self.control.reset()

    def error_for_status(self, status: int) -> HTTPError:
        """Body used by `Fault(kind="status")` without an explicit body."""
        return openai_status_error(status)

    def not_found(self, req: Request) -> HTTPError:
        return openai_error(404, f"Invalid URL ({req.method} {req.path})")

    def default_stream_error(self) -> dict[str, Any]:
        return {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }

    # -- ASGI entry point
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served here
            return
        body = await _read_body(receive)
        req = _make_request(scope, body)
        is_control = req.path.startswith("/_fake/")
        if not is_control:
            model = req.json.get("model") if isinstance(req.json, dict) else None
            self.control.record(
                RecordedRequest(
                    method=req.method,
                    path=req.path,
                    query=req.query,
                    headers=req.headers,
                    json=req.json,
                    received_at=time.time(),
                )
            )
            req.fault = self.control.faults.take(req.path, model if isinstance(model, str) else None)

        disconnected = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, disconnected))
        try:
            await self._serve(req, send, disconnected)
        finally:
            watcher.cancel()

    async def _serve(self, req: Request, send: Send, disconnected: asyncio.Event) -> None:
        fault = req.fault
        if fault and fault.delay > 0 and await _wait(disconnected, fault.delay):
            self._note_cancel(req, 0)
            return
        if fault and fault.kind in ("reset", "close"):
            await abort_connection(send, rst=fault.kind == "reset")
            return
        resp: Response | SSEResponse
        if fault and fault.kind == "status":
            resp = self._fault_response(fault)
        else:
            try:
                resp = await self._dispatch(req)
            except HTTPError as err:
                if err.rule is not None:
                    self.control.violated(Violation(rule=err.rule, path=req.path, status=err.status))
                resp = err.response()
        if isinstance(resp, SSEResponse):
            await self._send_stream(req, resp, send, disconnected)
        else:
            await self._send_plain(req, resp, send)

    async def _dispatch(self, req: Request) -> Response | SSEResponse:
        parts = tuple(req.path.strip("/").split("/"))
        path_matched = False
        for r in self._routes:
            params = _match(r.parts, parts)
            if params is None:
                continue
            path_matched = True
            if r.method == req.method:
                req.path_params = params
                return await r.handler(req)
        if path_matched:
            raise openai_error(405, f"Method not allowed ({req.method} {req.path})")
        raise self.not_found(req)

    def _fault_response(self, fault: Fault) -> Response:
        if fault.body is None:
            resp = self.error_for_status(fault.status).response()
        elif isinstance(fault.body, str):
            resp = Response(fault.status, fault.body.encode(), content_type=fault.content_type)
        else:
            resp = json_response(fault.body, fault.status)
        resp.headers.update(fault.headers)
        return resp

    async def _send_plain(self, req: Request, resp: Response, send: Send) -> None:
        fault = req.fault
        body = resp.body
        if fault and fault.kind == "malformed":
            body = b"\x00\xffnot json{" if fault.garbage else body[: len(body) // 2]
        headers = _headers(resp.headers, resp.content_type)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        if fault and fault.kind == "cut":
            # Promise the full length, deliver half: the client sees an incomplete body.
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            await abort_connection(send, rst=False)
            return
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_stream(self, req: Request, resp: SSEResponse, send: Send, disconnected: asyncio.Event) -> None:
        fault = req.fault
        interval = fault.interval if fault and fault.interval is not None else resp.interval
        events: Iterable[bytes] = resp.events
        if fault and fault.kind == "stream_error":
            error = resp.error_event(fault.body or self.default_stream_error())
            events = [*itertools.islice(resp.events, fault.after), error]
        headers = _headers({"cache-control": "no-cache", **resp.headers}, resp.content_type)
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})

        def opened(c: FakeControl) -> None:
            c.open_streams += 1
            c.started_streams += 1

        self.control.update(opened)
        sent = 0
        try:
            for event in events:
                if sent and interval > 0 and await _wait(disconnected, interval):
                    self._note_cancel(req, sent, resp.model)
                    return
                if fault and fault.kind == "cut" and sent == fault.after:
                    await abort_connection(send, rst=False)
                    return
                if fault and fault.kind == "malformed" and sent == fault.after:
                    bad = b"\x00\xff\xfe garbage \x81\n\n" if fault.garbage else b"data: {not json\n\n"
                    await send({"type": "http.response.body", "body": bad, "more_body": True})
                await send({"type": "http.response.body", "body": event, "more_body": True})
                sent += 1
                if disconnected.is_set():
                    # uvicorn's send() silently drops writes after a disconnect.
                    self._note_cancel(req, sent, resp.model)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.control.update(_completed)
        finally:
            self.control.update(_closed)

    def _note_cancel(self, req: Request, sent: int, model: str | None = None) -> None:
        if model is None and isinstance(req.json, dict) and isinstance(req.json.get("model"), str):
            model = req.json["model"]
        self.control.cancelled(Cancellation(path=req.path, model=model, events_sent=sent, cancelled_at=time.time()))

    # -- HTTP control API (for fakes running in another process)
    async def _ctl_push_faults(self, req: Request) -> Response:
        items = req.json if isinstance(req.json, list) else [req.json]
        try:
            faults = [Fault.from_json(item) for item in items if isinstance(item, dict)]
        except (TypeError, ValueError) as exc:
            raise openai_error(400, str(exc)) from exc
        if len(faults) != len(items):
            raise openai_error(400, "expected a fault object or a list of them")
        self.control.faults.push(*faults)
        return json_response({"pending": len(self.control.faults)}, 201)

    async def _ctl_list_faults(self, req: Request) -> Response:
        return json_response({"faults": [f.to_json() for f in self.control.faults.pending()]})

    async def _ctl_requests(self, req: Request) -> Response:
        return json_response({"requests": self.control.requests})

    async def _ctl_stats(self, req: Request) -> Response:
        return json_response(self.control.stats())

    async def _ctl_reset(self, req: Request) -> Response:
        self.reset()
        return json_response({"ok": True})


def _completed(c: FakeControl) -> None:
    c.completed_streams += 1


def _closed(c: FakeControl) -> None:
    c.open_streams -= 1


def _match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params: dict[str, str] = {}
    for pat, part in zip(pattern, parts, strict=True):
        if pat.startswith("{") and pat.endswith("}"):
            params[pat[1:-1]] = part
        elif pat != part:
            return None
    return params


def _headers(extra: Mapping[str, str], content_type: str | None) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", content_type.encode())] if content_type else []
    out += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    return out


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


def _make_request(scope: Scope, body: bytes) -> Request:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    parsed: Any = None
    bad = False
    if body:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            bad = True
    return Request(
        method=scope["method"].upper(),
        path=scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=body,
        json=parsed,
        json_error=bad,
    )


async def _watch_disconnect(receive: Receive, flag: asyncio.Event) -> None:
    # After the body is read, uvicorn's receive() blocks until the client goes away
    # (or the response completes, which we ignore because the request is over by then).
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            flag.set()
            return


async def _wait(flag: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `flag` is set first; True when it was (client left)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(flag.wait(), seconds)
    return flag.is_set()


# ------------------------------------------------------------------------- server

AppT = TypeVar("AppT", bound=FakeApp)


class FakeServer(Generic[AppT]):
    """Serve a FakeApp with uvicorn on 127.0.0.1 in a daemon thread with its own loop.

    Usage: `with FakeServer(OpenAICompatApp()) as fake: httpx.get(fake.url + "/v1/models")`.
    The socket is bound before the thread starts, so the port is known and free of races.
    """

    def __init__(self, app: AppT, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("server not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control(self) -> FakeControl:
        return self.app.control

    @property
    def faults(self) -> FaultQueue:
        return self.app.control.faults

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.app.control.requests

    @property
    def violations(self) -> list[Violation]:
        return self.app.control.violations

    def reset(self) -> None:
        """Clear faults, recordings and counters, and restore the app's constructor settings."""
        self.app.reset()

    def start(self, timeout: float = 5.0) -> FakeServer[AppT]:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(128)
        self._sock = sock
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            loop="asyncio",  # plain asyncio transports: abort_connection relies on them
            log_config=None,  # never reconfigure the host process' logging (pytest, Django)
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # keeps `send` uvicorn's own bound method
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake server failed to start")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True  # don't wait for open streams to finish
        self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeServer[AppT]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RemoteFake:
    """Drive a fake running in another process through its `/_fake/` control API."""

    def __init__(self, url: str) -> None:
        import httpx  # local import: only needed by callers of this class

        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=5)

    def push(self, *faults: Fault) -> None:
        self._client.post("/_fake/faults", json=[f.to_json() for f in faults]).raise_for_status()

    def requests(self) -> list[RecordedRequest]:
        resp = self._client.get("/_fake/requests")
        resp.raise_for_status()
        return list(resp.json()["requests"])

    def stats(self) -> dict[str, Any]:
        resp = self._client.get("/_fake/stats")
        resp.raise_for_status()
        return dict(resp.json())

    def reset(self) -> None:
        self._client.post("/_fake/reset").raise_for_status()

    def close(self) -> None:
        self._client.close()


def wait_for_signal() -> None:
    """Block the main thread until SIGINT or SIGTERM (for standalone fakes).

    Handlers are installed explicitly because a process started in the background by a
    non-interactive shell inherits SIGINT as *ignored*, and Ctrl-C/`kill -INT` would do nothing.
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):  # a timed wait keeps the main thread responsive to signals
        pass


def iter_split(text: str, n: int) -> Iterator[str]:
    """Split `text` into at most `n` non-empty, near-equal slices (deterministic)."""
    n = max(1, min(n, len(text))) if text else 0
    size, extra = divmod(len(text), n) if n else (0, 0)
    pos = 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        yield text[pos : pos + step]
        pos += step


@dataclass
class SSEMessage:
    event: str | None
    data: str

    def json(self) -> Any:
        return orjson.loads(self.data)


def parse_sse(raw: str | bytes) -> list[SSEMessage]:
    """Minimal SSE parser for assertions on captured streams (comments and ids ignored)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    out: list[SSEMessage] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            out.append(SSEMessage(event, "\n".join(data)))
    return out
