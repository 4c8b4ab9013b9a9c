"""One client request, start to finish: authenticate, validate, dispatch, relay, account.

Views stay thin: they hand the raw request here and turn the Reply into an HTTP response.
Every request leaves exactly one usage record, whatever happens (see `_Finisher`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from accounts.selectors import KeyInfo
from audit.models import Outcome
from audit.services import UsageDraft, usage_record
from executors.base import UpstreamResponse
from executors.openai_compat.executor import UpstreamStreamError
from formats import (
    Dialect,
    InvalidRequest,
    StreamTranslator,
    UnsupportedFeature,
    Usage,
    encode_sse,
    usage_from,
    validate_request,
)
from routing.auth import client_authenticate
from routing.catalog import model_candidates
from routing.dispatch import dispatch_open
from routing.errors import ErrorCode, ProxyError
from routing.relay import ChatPassthrough

log = logging.getLogger(__name__)

SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    # Called if the server drops a streaming reply without iterating it (client gone early).
    abandon: Callable[[], None] | None = None


@dataclass(slots=True)
class _Finisher:
    """Records the request's usage exactly once."""

    draft: UsageDraft
    started: float = field(default_factory=time.perf_counter)
    done: bool = False

    def mark_first_byte(self) -> None:
        if self.draft.ttfb_ms is None:
            self.draft.ttfb_ms = int((time.perf_counter() - self.started) * 1000)

    def apply_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        d = self.draft
        d.input_tokens, d.output_tokens = usage.input_tokens, usage.output_tokens
        d.cached_tokens, d.cache_creation_tokens = usage.cached_tokens, usage.cache_creation_tokens
        d.reasoning_tokens = usage.reasoning_tokens

    def fail(self, outcome: str, status: int, code: str, message: str) -> None:
        d = self.draft
        d.outcome, d.status_code, d.error_code, d.error_message = outcome, status, code, message[:500]

    async def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.draft.duration_ms = int((time.perf_counter() - self.started) * 1000)
        try:
            await usage_record(self.draft)
        except Exception:  # the client's answer must not fail because accounting did
            log.exception("could not buffer usage record %s", self.draft.request_id)


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProxyError(400, ErrorCode.INVALID_REQUEST, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProxyError(400, ErrorCode.INVALID_REQUEST, "request body must be a JSON object")
    return body


def _authorize_model(key: KeyInfo, model: str) -> None:
    if not key.allows(model):
        raise ProxyError(403, ErrorCode.FORBIDDEN, f"this API key may not use model '{model}'", param="model")


async def proxy_handle(
    *, dialect: Dialect, headers: Mapping[str, str], raw_body: bytes, body_too_large: bool = False
) -> Reply:
    fin = _Finisher(UsageDraft(surface=dialect.value))
    streaming_handed_off = False
    try:
        key = await client_authenticate(headers)
        fin.draft.client_key_id, fin.draft.key_prefix = key.id, key.prefix
        if body_too_large:
            raise ProxyError(413, ErrorCode.REQUEST_TOO_LARGE, "request body is larger than this proxy accepts")
        body = _parse_body(raw_body)
        if isinstance(body.get("model"), str):
            fin.draft.requested_model = body["model"][:200]
        try:
            validate_request(dialect, body)
        except InvalidRequest as exc:
            raise ProxyError(400, ErrorCode.INVALID_REQUEST, exc.message, param=exc.field) from None
        except UnsupportedFeature as exc:
            raise ProxyError(400, ErrorCode.UNSUPPORTED_FIELD, f"{exc.field}: {exc.reason}", param=exc.field) from None
        model: str = body["model"]
        stream = body.get("stream") is True
        fin.draft.stream = stream
        _authorize_model(key, model)
        candidates = await model_candidates(model)
        if not candidates:
            raise ProxyError(404, ErrorCode.MODEL_NOT_FOUND, f"the model '{model}' does not exist", param="model")
        opened = await dispatch_open(
            candidates=candidates, dialect=dialect, body=body, model=model, stream=stream, draft=fin.draft
        )
        if not stream:
            return _whole_reply(fin, dialect, opened.response, model)
        streaming_handed_off = True
        return _stream_reply(fin, dialect, opened.response, body, model)
    except ProxyError as exc:
        fin.fail(exc.outcome, exc.status, exc.code, exc.message)
        status, hdrs, payload = exc.render(dialect)
        return Reply(status=status, headers=hdrs, body=payload)
    except asyncio.CancelledError:
        fin.fail(Outcome.CLIENT_DISCONNECT, 499, "client_disconnect", "client went away before the answer")
        raise
    finally:
        if not streaming_handed_off:
            await fin.finish()


def _whole_reply(fin: _Finisher, dialect: Dialect, response: UpstreamResponse, model: str) -> Reply:
    body = response.body or {}
    usage = body.get("usage")
    if isinstance(usage, dict):
        fin.apply_usage(usage_from(dialect, usage))
    served = body.get("model")
    fin.draft.served_model = served if isinstance(served, str) else model
    fin.mark_first_byte()
    return Reply(status=200, headers=dict(JSON_HEADERS), body=orjson.dumps(body))


def _stream_reply(
    fin: _Finisher, dialect: Dialect, response: UpstreamResponse, body: dict[str, Any], model: str
) -> Reply:
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    relay = ChatPassthrough(include_usage=include_usage)
    assert response.events is not None
    events = response.events
    loop = asyncio.get_running_loop()

    async def generate() -> AsyncIterator[bytes]:
        try:
            async for ev in events:
                out = relay.feed(ev)
                if out is None:
                    continue
                fin.mark_first_byte()
                yield out
            if not relay.done:
                raise UpstreamStreamError("upstream stream ended before it was complete", "upstream_stream_cut")
        except asyncio.CancelledError:
            fin.fail(Outcome.CLIENT_DISCONNECT, 200, "client_disconnect", "client disconnected mid-stream")
            raise
        except GeneratorExit:
            fin.fail(Outcome.CLIENT_DISCONNECT, 200, "client_disconnect", "client disconnected mid-stream")
            raise
        except UpstreamStreamError as exc:
            fin.fail(Outcome.UPSTREAM_ERROR, 200, exc.code, str(exc))
            for err in StreamTranslator(dialect, dialect, model=model).error_events(
                message=str(exc), type="server_error", code=exc.code
            ):
                yield encode_sse(err)
        finally:
            fin.apply_usage(relay.usage)
            fin.draft.served_model = relay.served_model or model
            await response.aclose()
            await fin.finish()

    def abandon() -> None:
        if fin.done:
            return
        fin.fail(Outcome.CLIENT_DISCONNECT, 200, "client_disconnect", "client went away before the stream started")

        async def close() -> None:
            await response.aclose()
            await fin.finish()

        loop.call_soon_threadsafe(lambda: _background(loop.create_task(close())))

    return Reply(status=200, headers=dict(SSE_HEADERS), stream=generate(), abandon=abandon)


_tasks: set[asyncio.Task[None]] = set()


def _background(task: asyncio.Task[None]) -> None:
    # Keep a reference so the task is not garbage-collected before it runs.
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
