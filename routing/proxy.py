"""One client request, start to finish: authenticate, validate, dispatch, relay, account.

Views stay thin: they hand the raw request here and turn the Reply into an HTTP response.
Every request leaves exactly one usage record, whatever happens (see `_Finisher`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from accounts.selectors import KeyInfo
from audit.cleaning import usage_draft_clean
from audit.models import Outcome
from audit.services import UsageDraft, usage_record
from executors.base import DROPPED_TOOLS, Continuation, UpstreamStreamError, encode_options_for
from formats import (
    Dialect,
    InvalidRequest,
    UnsupportedFeature,
    UpstreamFormatError,
    Usage,
    custom_tool_names,
    decode_request,
    decode_response,
    encode_response,
    usage_from,
)
from formats.tokens import count_tokens
from observability.metrics import metrics_record
from observability.requestid import request_id_current
from pricing.cost import TokenCounts
from pricing.selectors import money_limits, request_cost_max, usage_draft_price
from routing.affinity import session_of
from routing.auth import client_authenticate
from routing.catalog import Resolution, catalog_resolve
from routing.compaction import (
    ENDPOINT,
    ENDPOINT_SURFACE,
    TRIGGER,
    compaction_final,
    compaction_kind,
    compaction_response,
)
from routing.conversation import Conversation
from routing.dispatch import Affinity, Job, Opened, dispatch_count_tokens, dispatch_open
from routing.errors import ErrorCode, ProxyError, internal_error
from routing.intake import Intake, body_is_large, body_read, expanded_read, translations_warm
from routing.relay import Relay
from routing.snapshots import snapshot_expand, snapshot_save
from state.limits import (
    LimitExceeded,
    MoneyLimit,
    Reservation,
    estimate_tokens,
    key_has_limits,
    limits_reserve,
    limits_settlement,
    max_output_tokens,
)
from statestore import get_store

log = logging.getLogger(__name__)

SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
JSON_HEADERS = {"content-type": "application/json"}
WS_SURFACE = "responses.ws"  # usage records of turns on a client WebSocket
# Names the hosted tools (e.g. web_search) the serving account could not run and that were
# dropped because the request only offered them (docs/formats.md "Hosted tools").
DROPPED_TOOLS_HEADER = "x-llmproxy-dropped-tools"


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncGenerator[bytes, None] | None = None
    # Called if the server drops a streaming reply without iterating it (client gone early).
    abandon: Callable[[], None] | None = None


@dataclass(slots=True)
class _Finisher:
    """Records the request's usage exactly once."""

    draft: UsageDraft
    started: float = field(default_factory=time.perf_counter)
    done: bool = False
    reservation: Reservation | None = None  # the key's limits, settled with the real usage

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
        # Shielded: a caller cancelled mid-way (a client WebSocket closed right after its
        # answer) must not lose the record or leave the key's reservation unsettled.
        task = asyncio.ensure_future(self._settle_and_record())
        _background(task)  # referenced until done, also if this caller is cancelled
        await asyncio.shield(task)

    async def _settle_and_record(self) -> None:
        self.draft.duration_ms = int((time.perf_counter() - self.started) * 1000)
        # Before settling: a hostile upstream's negative count must not refund a key's budget.
        usage_draft_clean(self.draft)
        settle: list[tuple[str, int]] = []
        if self.reservation is not None:
            d = self.draft
            cost = await _real_cost(d) if self.reservation.money else 0
            settle = limits_settlement(
                self.reservation, actual_tokens=d.input_tokens + d.output_tokens, actual_cost_nano=cost
            )
        try:
            # The settlement goes with the record: one state-store round trip, not two.
            await usage_record(self.draft, counters=settle)
        except Exception:  # the client's answer must not fail because accounting did
            log.exception("could not buffer usage record %s", self.draft.request_id)
        await metrics_record(self.draft)  # never raises; after the answer, off the TTFB


@dataclass(slots=True)
class _Request:
    """The validated client request and what routing derived from it."""

    dialect: Dialect
    key: KeyInfo
    body: dict[str, Any]
    model: str
    stream: bool
    provider_meta: dict[str, Any]
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def canonical(self) -> dict[str, Any]:
        canonical = self.memo.get("canonical")
        if canonical is None:
            canonical = decode_request(self.dialect, self.body)
            self.memo["canonical"] = canonical
        return canonical

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


async def _admit(
    fin: _Finisher,
    dialect: Dialect,
    headers: Mapping[str, str],
    raw_body: bytes,
    body_too_large: bool,
    *,
    count_only: bool = False,
    parsed: dict[str, Any] | None = None,
) -> tuple[KeyInfo, Intake]:
    """Authenticate and validate; nothing reaches an upstream before this passes.

    `parsed`: the body already parsed by the caller (a WebSocket frame), `raw_body` then only
    sizes the token estimate and the value bound."""
    key = await client_authenticate(headers)
    fin.draft.client_key_id, fin.draft.key_prefix = key.id, key.prefix
    if body_too_large:
        raise ProxyError(413, ErrorCode.REQUEST_TOO_LARGE, "request body is larger than this proxy accepts")
    large = body_is_large(raw_body)
    if large:  # off the event loop: see routing/intake.py
        intake = await asyncio.to_thread(
            body_read, dialect, raw_body, headers, count_only=count_only, large=True, parsed=parsed
        )
    else:
        intake = body_read(dialect, raw_body, headers, count_only=count_only, parsed=parsed)
    body = intake.body
    if body is not None and isinstance(body.get("model"), str):
        fin.draft.requested_model = body["model"][:200]
    if intake.error is not None:
        raise intake.error
    assert body is not None
    model: str = body["model"]
    if not key.allows(model):
        raise ProxyError(403, ErrorCode.FORBIDDEN, f"this API key may not use model '{model}'", param="model")
    if not count_only:
        money = await money_limits(key.id, key.team_id)
        if key_has_limits(key, money):
            fin.reservation = await _reserve(key, model, body, len(raw_body), money)
    return key, intake


async def _reserve(
    key: KeyInfo, model: str, body: dict[str, Any], body_len: int, money: tuple[MoneyLimit, ...]
) -> Reservation:
    """Take what the request can use at most from the key's limits (state.limits)."""
    tokens = estimate_tokens(body_len, body)
    cost = 0
    if money:
        output = max_output_tokens(body)
        cost = await request_cost_max(model, TokenCounts(input=tokens - output, output=output))
    try:
        return await limits_reserve(
            get_store(), key=key, estimated_tokens=tokens, estimated_cost_nano=cost, money=money
        )
    except LimitExceeded as exc:
        which = exc.which.replace("_", " ")
        wait = int(exc.retry_after + 0.999)
        message = (
            f"this API key's {which} is taken by requests still in flight; retry in {wait} s"
            if exc.busy
            else f"this API key reached its {which} limit; retry in {wait} s"
        )
        raise ProxyError(429, ErrorCode.CLIENT_RATE_LIMITED, message, retry_after=exc.retry_after) from None


async def _real_cost(draft: UsageDraft) -> int | None:
    """The request's cost for its money budget (None: unknown, the charge stays)."""
    try:
        return await usage_draft_price(draft)
    except Exception:  # settle conservatively rather than fail the accounting
        log.exception("could not price request %s for its money budget", draft.request_id)
        return None


async def proxy_handle(
    *, dialect: Dialect, headers: Mapping[str, str], raw_body: bytes, body_too_large: bool = False
) -> Reply:
    # The id bound by the ASGI layer (x-request-id, every log line) is the record's id too.
    fin = _Finisher(UsageDraft(surface=dialect.value, request_id=request_id_current()))
    return await _handle(fin, dialect, headers, raw_body, body_too_large)


async def compact_handle(*, headers: Mapping[str, str], raw_body: bytes, body_too_large: bool = False) -> Reply:
    """`POST /v1/responses/compact` (docs/protocols/compaction.md): the key checks, limits,
    dispatch and usage record of `/v1/responses`, answered with a `response.compaction` object."""
    fin = _Finisher(UsageDraft(surface=ENDPOINT_SURFACE, request_id=request_id_current()))
    return await _handle(fin, Dialect.RESPONSES, headers, raw_body, body_too_large, compact_endpoint=True)


async def ws_turn_handle(
    *, headers: Mapping[str, str], raw_frame: bytes, body: dict[str, Any], conversation: Conversation
) -> Reply:
    """One `response.create` frame on a client WebSocket: the HTTP path of a streamed
    `POST /v1/responses` (same key checks, limits, dispatch, relay and usage record), with the
    socket's conversation for `previous_response_id` and events framed one per message."""
    fin = _Finisher(UsageDraft(surface=WS_SURFACE, request_id=request_id_current()))
    return await _handle(fin, Dialect.RESPONSES, headers, raw_frame, False, conversation=conversation, parsed=body)


async def ws_upgrade_check(headers: Mapping[str, str]) -> Reply | None:
    """Authenticate a WebSocket upgrade like any request; a refusal leaves its usage record."""
    fin = _Finisher(UsageDraft(surface=WS_SURFACE, request_id=request_id_current()))
    try:
        await client_authenticate(headers)
    except ProxyError as exc:
        fin.fail(exc.outcome, exc.status, exc.code, exc.message)
        status, hdrs, payload = exc.render(Dialect.RESPONSES)
        await fin.finish()
        return Reply(status=status, headers=hdrs, body=payload)
    return None  # accepted: the upgrade itself leaves no record, each turn does


async def _handle(
    fin: _Finisher,
    dialect: Dialect,
    headers: Mapping[str, str],
    raw_body: bytes,
    body_too_large: bool,
    *,
    conversation: Conversation | None = None,
    parsed: dict[str, Any] | None = None,
    compact_endpoint: bool = False,
) -> Reply:
    streaming_handed_off = False
    try:
        key, intake = await _admit(fin, dialect, headers, raw_body, body_too_large, parsed=parsed)
        body = intake.body
        assert body is not None
        if compact_endpoint and "stream" in body:
            raise ProxyError(400, ErrorCode.INVALID_REQUEST, "/v1/responses/compact does not stream", param="stream")
        if conversation is not None and body.get("generate") is False:
            await _resolve(body["model"])
            return _prewarm_reply(fin, conversation, body)
        req, affinity, continuation = await _route_request(dialect, headers, key, intake, conversation)
        fin.draft.stream = req.stream
        compaction = compaction_kind(dialect, req.body, endpoint=compact_endpoint)
        resolution = await _resolve(req.model)
        if req.memo.get("canonical") is not None:  # a large body: its translations off the loop too
            options = [encode_options_for(t.account) for t in resolution.targets]
            await asyncio.to_thread(translations_warm, req.memo, dialect, options, compaction=compaction is not None)
        job = Job(
            resolution,
            dialect,
            req.body,
            req.stream and compaction is None,  # a compaction's answer is one item: read whole
            headers,
            req.provider_meta,
            req.memo,
            session=conversation.session if conversation is not None else None,
            continuation=continuation,
            compaction=compaction,
        )
        opened = await dispatch_open(job, draft=fin.draft, affinity=affinity)
        headers_extra = _dropped_tools(fin, req)
        if compaction is not None:
            opened = await _compacted(opened, compaction, req)
            if compaction == ENDPOINT:
                return _compact_reply(fin, req, opened, headers_extra)
        if not req.stream:
            return await _whole_reply(fin, req, opened, headers_extra)
        reply = _stream_reply(fin, req, opened, headers_extra, conversation)
        streaming_handed_off = True  # from here the stream's own finally records it
        return reply
    except ProxyError as exc:
        return _failed(fin, exc, dialect)
    except UpstreamFormatError as exc:
        fin.fail(Outcome.UPSTREAM_ERROR, 502, "upstream_bad_response", exc.message)
        status, hdrs, payload = ProxyError(502, ErrorCode.UPSTREAM_ERROR, f"upstream answer: {exc.message}").render(
            dialect
        )
        return Reply(status=status, headers=hdrs, body=payload)
    except (UnsupportedFeature, InvalidRequest) as exc:
        err = (
            ProxyError(400, ErrorCode.UNSUPPORTED_FIELD, f"{exc.field}: {exc.reason}", param=exc.field)
            if isinstance(exc, UnsupportedFeature)
            else ProxyError(400, ErrorCode.INVALID_REQUEST, exc.message, param=exc.field)
        )
        fin.fail(Outcome.REJECTED, 400, err.code, err.message)
        status, hdrs, payload = err.render(dialect)
        return Reply(status=status, headers=hdrs, body=payload)
    except asyncio.CancelledError:
        fin.fail(Outcome.CLIENT_DISCONNECT, 499, "client_disconnect", "client went away before the answer")
        raise
    except Exception as exc:  # recorded as what it is, never as the default ok/200
        return _failed(fin, internal_error(exc), dialect)
    finally:
        if not streaming_handed_off:
            await fin.finish()


async def _compacted(opened: Opened, kind: str, req: _Request) -> Opened:
    final = await asyncio.to_thread(compaction_final, opened, kind, req.canonical, req.model)
    response = compaction_response(opened, final, stream=req.stream and kind == TRIGGER)
    return Opened(account=opened.account, response=response, target=opened.target)


def _compact_reply(fin: _Finisher, req: _Request, opened: Opened, headers: dict[str, str]) -> Reply:
    """`/v1/responses/compact`: the compaction object as JSON (no snapshot: it is no response)."""
    body = opened.response.body or {}
    usage = body.get("usage")
    _estimate_missing_usage(fin, req, usage_from(Dialect.RESPONSES, usage) if isinstance(usage, dict) else None)
    fin.draft.served_model = opened.target.upstream_model
    fin.mark_first_byte()
    return Reply(status=200, headers={**JSON_HEADERS, **headers}, body=orjson.dumps(body))


async def _resolve(model: str) -> Resolution:
    resolution = await catalog_resolve(model)
    if not resolution.targets:
        raise ProxyError(404, ErrorCode.MODEL_NOT_FOUND, f"the model '{model}' does not exist", param="model")
    return resolution


async def _route_request(
    dialect: Dialect,
    headers: Mapping[str, str],
    key: KeyInfo,
    intake: Intake,
    conversation: Conversation | None,
) -> tuple[_Request, Affinity, Continuation | None]:
    """The stateless request routing sees: `previous_response_id` expanded (from the socket's
    memory or the stored snapshots), and the account the conversation is bound to."""
    body = intake.body
    assert body is not None
    provider_meta: dict[str, Any] = {}
    continuation: Continuation | None = None
    session = intake.session if intake.large else session_of(dialect, headers, body)
    affinity = Affinity(key_id=key.id, session=session)
    memo = intake.memo
    if conversation is not None:
        body.pop("generate", None)  # true is the default; false was answered as a prewarm
        expanded, provider_meta, affinity.preferred_account, continuation = await conversation.expand(
            key_id=key.id, body=body
        )
    elif dialect is Dialect.RESPONSES and body.get("previous_response_id"):
        expanded, provider_meta, affinity.preferred_account = await snapshot_expand(key_id=key.id, body=body)
    else:
        expanded = body
    if expanded is not body:
        # The whole conversation is now the body: decoded off the loop.
        body, memo = expanded, (await asyncio.to_thread(expanded_read, dialect, expanded)).memo
    req = _Request(
        dialect=dialect,
        key=key,
        body=body,
        model=body["model"],
        stream=body.get("stream") is True,
        provider_meta=provider_meta,
        memo=memo,
    )
    return req, affinity, continuation


def _prewarm_reply(fin: _Finisher, conversation: Conversation, body: dict[str, Any]) -> Reply:
    frames = conversation.prewarm(body)
    fin.draft.stream = True
    fin.mark_first_byte()

    async def stream() -> AsyncGenerator[bytes, None]:
        for frame in frames:
            yield frame

    return Reply(status=200, headers={}, stream=stream())


async def count_tokens_handle(*, headers: Mapping[str, str], raw_body: bytes, body_too_large: bool = False) -> Reply:
    """Anthropic `count_tokens`: the upstream's exact count where the model's provider counts
    (dispatch_count_tokens), else counted locally."""
    fin = _Finisher(UsageDraft(surface="messages.count_tokens", request_id=request_id_current()))
    try:
        _, intake = await _admit(fin, Dialect.MESSAGES, headers, raw_body, body_too_large, count_only=True)
        body = intake.body
        assert body is not None
        resolution = await catalog_resolve(body["model"])
        if not resolution.targets:
            raise ProxyError(
                404, ErrorCode.MODEL_NOT_FOUND, f"the model '{body['model']}' does not exist", param="model"
            )
        n = await dispatch_count_tokens(resolution, body, headers, fin.draft)
        if n is None:
            try:
                # CPU-bound, proportional to the body (and the first call loads the tokenizer):
                # decoded and counted off the event loop.
                n = await asyncio.to_thread(_count_request_tokens, body)
            except (UnsupportedFeature, InvalidRequest) as exc:
                raise ProxyError(400, ErrorCode.INVALID_REQUEST, str(exc), param=exc.field) from None
            fin.draft.usage_estimated = True
        fin.draft.input_tokens = n
        fin.mark_first_byte()
        return Reply(status=200, headers=dict(JSON_HEADERS), body=orjson.dumps({"input_tokens": n}))
    except ProxyError as exc:
        return _failed(fin, exc, Dialect.MESSAGES)
    except Exception as exc:
        return _failed(fin, internal_error(exc), Dialect.MESSAGES)
    finally:
        await fin.finish()


def _count_request_tokens(body: dict[str, Any]) -> int:
    # count_tokens bodies carry no max_tokens; the decoder requires one.
    return count_tokens(decode_request(Dialect.MESSAGES, {"max_tokens": 1, **body}))


def _approx_prompt_tokens(req: _Request) -> int:
    # Prepared off the loop for a large body (routing.intake.translations_warm).
    approx = req.memo.get("approx_tokens")
    return approx if isinstance(approx, int) else count_tokens(req.canonical, exact=False)


def _failed(fin: _Finisher, exc: ProxyError, dialect: Dialect) -> Reply:
    fin.fail(exc.outcome, exc.status, exc.code, exc.message)
    status, hdrs, payload = exc.render(dialect)
    return Reply(status=status, headers=hdrs, body=payload)


def _dropped_tools(fin: _Finisher, req: _Request) -> dict[str, str]:
    """Hosted tools the serving attempt dropped: kept on its attempt-log entry (so the usage
    record and the metrics see them) and named in a response header."""
    dropped = req.memo.get(DROPPED_TOOLS)
    if not dropped:
        return {}
    if fin.draft.attempt_log:
        fin.draft.attempt_log[-1][DROPPED_TOOLS] = list(dropped)
    return {DROPPED_TOOLS_HEADER: ",".join(dropped)}


def _estimate_missing_usage(fin: _Finisher, req: _Request, usage: Usage | None) -> None:
    if usage is not None:
        fin.apply_usage(usage)
        return
    # The upstream reported nothing: count the prompt locally and say it is an estimate.
    try:
        fin.draft.input_tokens = _approx_prompt_tokens(req)
    except (UnsupportedFeature, InvalidRequest):
        return
    fin.draft.usage_estimated = True


async def _whole_reply(fin: _Finisher, req: _Request, opened: Opened, headers: dict[str, str]) -> Reply:
    response = opened.response
    upstream_body = response.body or {}
    if response.dialect is req.dialect:
        client_body = upstream_body
        usage_obj = upstream_body.get("usage")
        usage = usage_from(req.dialect, usage_obj) if isinstance(usage_obj, dict) else None
    else:
        canonical = decode_response(response.dialect, upstream_body, custom_tools=custom_tool_names(req.canonical))
        client_body = encode_response(canonical, req.dialect, model=req.model)
        usage_obj = canonical.get("usage")
        usage = usage_from(Dialect.RESPONSES, usage_obj) if isinstance(usage_obj, dict) else None
    _estimate_missing_usage(fin, req, usage)
    served = upstream_body.get("model")
    fin.draft.served_model = served if isinstance(served, str) else opened.target.upstream_model
    if req.dialect is Dialect.RESPONSES:
        await snapshot_save(
            key_id=req.key.id,
            account_id=opened.account.id,
            request_body=req.body,
            response=client_body,
            provider_meta=response.provider_meta,
        )
    fin.mark_first_byte()
    return Reply(status=200, headers={**JSON_HEADERS, **headers}, body=orjson.dumps(client_body))


def _stream_reply(
    fin: _Finisher, req: _Request, opened: Opened, headers: dict[str, str], conversation: Conversation | None = None
) -> Reply:
    response = opened.response
    translating = response.dialect is not req.dialect
    relay = Relay(
        source=response.dialect,
        target=req.dialect,
        model=req.model,
        include_usage=req.include_usage,
        custom_tools=custom_tool_names(req.canonical) if translating else (),
        input_tokens=_approx_prompt_tokens(req) if translating and req.dialect is Dialect.MESSAGES else 0,
        frames=conversation is not None,
    )
    assert response.events is not None
    events = response.events
    loop = asyncio.get_running_loop()

    async def generate() -> AsyncGenerator[bytes, None]:
        try:
            async for ev in events:
                for out in relay.feed(ev):
                    fin.mark_first_byte()
                    yield out
            if not relay.done:
                raise UpstreamStreamError("upstream stream ended before it was complete", "upstream_stream_cut")
            for out in relay.finish():
                yield out
            if req.dialect is Dialect.RESPONSES and relay.final_response is not None:
                if conversation is not None:
                    conversation.remember(
                        request_body=req.body,
                        response=relay.final_response,
                        account_id=opened.account.id,
                        meta=response.provider_meta,
                    )
                await snapshot_save(
                    key_id=req.key.id,
                    account_id=opened.account.id,
                    request_body=req.body,
                    response=relay.final_response,
                    provider_meta=response.provider_meta,
                )
        except (asyncio.CancelledError, GeneratorExit):
            if not relay.done:  # after the terminal event the client has its whole answer
                fin.fail(Outcome.CLIENT_DISCONNECT, 200, "client_disconnect", "client disconnected mid-stream")
            raise
        except (UpstreamStreamError, UpstreamFormatError) as exc:
            code = exc.code if isinstance(exc, UpstreamStreamError) else "upstream_malformed_stream"
            fin.fail(Outcome.UPSTREAM_ERROR, 200, code, str(exc))
            for out in relay.error(message=str(exc), code=code):
                yield out
        except Exception:
            # A bug must still end the stream visibly (never a silently truncated success).
            log.exception("stream relay failed")
            fin.fail(Outcome.PROXY_ERROR, 200, "internal_error", "the proxy failed while relaying the stream")
            for out in relay.error(message="internal proxy error while relaying the stream", code="internal_error"):
                yield out
        finally:
            _estimate_missing_usage(fin, req, relay.usage)
            if relay.usage is None and not fin.draft.output_tokens:
                # Cut before the upstream said how much it sent: count what the client got.
                fin.draft.output_tokens = relay.output_estimate()
                fin.draft.usage_estimated = True
            fin.draft.served_model = relay.served_model or opened.target.upstream_model
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

    return Reply(status=200, headers={**SSE_HEADERS, **headers}, stream=generate(), abandon=abandon)


_tasks: set[asyncio.Task[None]] = set()


def _background(task: asyncio.Task[None]) -> None:
    # Keep a reference so the task is not garbage-collected before it runs.
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
