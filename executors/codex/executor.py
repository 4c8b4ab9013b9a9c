"""OpenAI Codex upstream (ChatGPT sign-in): `POST {base}/responses` over HTTP + SSE, or the
responses WebSocket (docs/protocols/codex.md#transport-http-and-websocket) for models the catalog flags
`prefer_websockets`.

Every client dialect is translated to Responses, the Codex body rules are applied, and the
header set is rebuilt from scratch with the official CLI's fingerprint and a resolved
identity (docs/protocols/codex.md#request-fingerprint). The upstream is always streamed; a non-stream client gets the
final response object assembled from the events. The handshake events are read before
returning, so an error hidden in a 200 stream still fails over (docs/protocols/codex.md#errors).

Transport (docs/protocols/codex.md#transport-http-and-websocket product rule): the upstream WebSocket is used when the
account allows it
(provider_config `websockets`, default true) and the model is flagged `prefer_websockets` in
the catalog (UpstreamCall.facts). Its frames feed the same event filter, handshake buffering
and error mapping as SSE. A failed handshake falls back to HTTP SSE within the same request
and pins (account, model) to HTTP for a while (executors/codex/websocket.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import orjson
from websockets.exceptions import ConnectionClosed

from accounts.models import AccountState
from accounts.selectors import AccountInfo
from executors.base import CooldownScope, UpstreamCall, UpstreamError, UpstreamResponse, UpstreamStreamError
from executors.codex import errors, ratelimits
from executors.codex.config import CodexConfig, codex_config
from executors.codex.identity import Identity, TurnIds, resolve_identity
from executors.codex.request import (
    apply_identity,
    codex_body,
    codex_compact_body,
    codex_headers,
    has_compaction_trigger,
)
from executors.codex.services import CodexRefreshError, codex_token_refresh
from executors.codex.stream import CodexEventFilter
from executors.codex.websocket import (
    SLOT,
    KeptSocket,
    WsHandshakeFailed,
    ws_events,
    ws_open,
    ws_recently_failed,
    ws_remember_failure,
    ws_url,
)
from executors.errors import classify_transport_error
from executors.http import http_post
from executors.streaming import assemble_response, open_stream, read_bounded, relay_events
from formats import Dialect, SseEvent
from observability.metrics import ws_upstream_reconnect
from state.quota import quota_family_for_model, quota_snapshot_set
from statestore import get_store

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 * 1024
_MAX_COMPACT_BODY = 64 * 1024 * 1024  # a compaction object holds the retained user messages
_KEPT_HEADERS = ("x-request-id", "openai-model", "x-codex-active-limit", "x-codex-turn-state", "cf-ray")


class CodexStreamError(UpstreamStreamError):
    """Mid-stream failure; a subclass of the relay's stream error so routing ends the stream properly."""


def _lower(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _event_headers(obj: Mapping[str, Any], headers: dict[str, str]) -> dict[str, str]:
    """A WebSocket error frame carries its own status and headers
    (docs/protocols/codex.md#transport-http-and-websocket), e.g. the rate-limit
    headers of a `usage_limit_reached`; they win over the handshake's."""
    extra = obj.get("headers")
    if isinstance(extra, Mapping):
        return {**headers, **{str(k).lower(): str(v) for k, v in extra.items()}}
    return headers


# Errors after which a kept socket is replaced and the turn sent again in full
# (docs/protocols/codex.md#transport-http-and-websocket): the
# backend's 60-minute cap, a continuation the socket no longer holds, a socket that closed.
_REPLACE_ALWAYS = frozenset(
    {"websocket_connection_limit_reached", "previous_response_not_found", "upstream_socket_closed"}
)


def _replaceable(exc: UpstreamError, reused: bool) -> bool:
    # A reused socket that ends before its first event was most likely closed while idle.
    return exc.code in _REPLACE_ALWAYS or (reused and exc.code == "upstream_stream_cut")


def _frame(body: dict[str, Any], kept: KeptSocket | None, call: UpstreamCall) -> bytes:
    """The `response.create` message. When the request continues the last response of a
    socket that still holds it (the client sent `previous_response_id` for it), only the new
    input items go out, with that id; otherwise the whole request."""
    cont, items = call.continuation, body.get("input")
    incremental = (
        kept is not None
        and cont is not None
        and kept.last_response_id == cont.response_id
        and isinstance(items, list)
        and cont.items <= len(items)
        and not has_compaction_trigger(call.body)  # compaction rewrites the history the socket holds
    )
    if not incremental:
        return orjson.dumps({"type": "response.create", **body})
    assert cont is not None and isinstance(items, list)
    return orjson.dumps(
        {"type": "response.create", **body, "previous_response_id": cont.response_id, "input": items[cont.items :]}
    )


class CodexExecutor:
    provider = "codex"
    billing = "subscription"
    # The backend compacts itself (a `compaction_trigger` turn, `/responses/compact`).
    native_compaction = True

    def __init__(self) -> None:
        self._turns = TurnIds()
        # Newest secret this process obtained by refreshing, keyed by (account id, installation
        # id): AccountInfo's copy lags up to the cache TTL behind a refresh.
        self._fresh: dict[tuple[int, str], dict[str, Any]] = {}

    # ------------------------------------------------------------------ credentials
    def _key(self, account: AccountInfo) -> tuple[int, str]:
        return (account.id, str(account.secret.get("installation_id", "")))

    def _secret(self, account: AccountInfo) -> dict[str, Any]:
        fresh = self._fresh.get(self._key(account))
        cached = account.secret
        if fresh is not None and float(fresh.get("last_refresh") or 0) >= float(cached.get("last_refresh") or 0):
            return fresh
        return cached

    async def refresh_credential(self, account: AccountInfo) -> bool:
        """After a 401 (dispatch calls this once): rotate the tokens unless a sibling already did."""
        before = self._secret(account).get("access_token")
        try:
            outcome = await codex_token_refresh(store=get_store(), account_id=account.id, stale_access_token=before)
        except CodexRefreshError as exc:
            raise _refresh_failed(exc, "Codex credential rejected and refresh failed") from None
        self._fresh[self._key(account)] = outcome.secret
        return outcome.secret.get("access_token") != before

    async def _usable_secret(self, account: AccountInfo, cfg: CodexConfig) -> dict[str, Any]:
        secret = self._secret(account)
        expires = secret.get("expires_at")
        now = time.time()
        if not isinstance(expires, int | float) or expires - now >= cfg.inline_refresh_seconds:
            return secret
        # Close to expiry (Celery's refresh-ahead did not get there): refresh inline, single-flight.
        try:
            outcome = await codex_token_refresh(store=get_store(), account_id=account.id)
        except CodexRefreshError as exc:
            if not exc.terminal and expires > now:
                return secret  # still valid for a moment; the next request retries the refresh
            raise _refresh_failed(exc, "Codex token expired and refresh failed") from None
        self._fresh[self._key(account)] = outcome.secret
        return outcome.secret

    # ------------------------------------------------------------------------ open
    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        account = call.account
        installation = str(account.secret.get("installation_id") or getattr(account, "installation_id", "") or "")
        cfg = codex_config(account.provider_config)
        # UnsupportedFeature → the routing's 400. Codex reads its own compaction blobs.
        translated = call.body_for(Dialect.RESPONSES, native_compaction=True)
        endpoint = call.compaction == "endpoint"
        compaction = endpoint or has_compaction_trigger(translated)
        shape = codex_compact_body if endpoint else codex_body
        body = shape(translated, default_instructions=cfg.default_instructions)
        ident = resolve_identity(
            headers=call.client_headers,
            body=body,
            snapshot_meta=call.provider_meta,
            installation_id=installation,
            turn_id_default=self._turns.for_request(call.request_id),
            model=call.upstream_model,
            compaction=compaction,
        )
        body = apply_identity(body, ident)
        secret = await self._usable_secret(account, cfg)
        # A 401 is classified `refresh_credential`: dispatch refreshes once and retries once.
        if endpoint:
            body.pop("client_metadata", None)  # not a field of the compaction input
            return await self._compact(call, cfg, secret, ident, body)
        return await self._attempt(call, cfg, secret, ident, body)

    async def _compact(
        self, call: UpstreamCall, cfg: CodexConfig, secret: dict[str, Any], ident: Identity, body: dict[str, Any]
    ) -> UpstreamResponse:
        """`POST {base}/responses/compact`: unary JSON, answered with the backend's
        `response.compaction` object, passed to the client verbatim (docs/protocols/compaction.md)."""
        headers = _credential_headers(cfg, secret, ident, compact=True)
        url = f"{call.account.base_url}/responses/compact"
        try:
            response = await http_post("codex", url, content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from None
        try:
            ok = 200 <= response.status_code < 300
            raw = await read_bounded(response, _MAX_COMPACT_BODY if ok else _MAX_ERROR_BODY)
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from None
        finally:
            await response.aclose()
        resp_headers = _lower(response.headers)
        request_id = resp_headers.get("x-request-id", "")
        await self._record_headers(call, resp_headers)
        ctype = resp_headers.get("content-type", "")
        try:
            payload = orjson.loads(raw) if ok and "json" in ctype else None
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("output"), list):
            # Any non-2xx is an error; a 2xx that is not the compaction object is a bad gateway.
            err = errors.classify(
                status=response.status_code if not ok else 502,
                body=raw[:_MAX_ERROR_BODY],
                headers=resp_headers,
                content_type=ctype,
                request_id=request_id,
            )
            await self._note_usage_limit(call, err, resp_headers)
            raise err
        return UpstreamResponse(
            dialect=Dialect.RESPONSES,
            request_id=request_id,
            body=payload,
            headers={k: v for k, v in resp_headers.items() if k in _KEPT_HEADERS},
            provider_meta=ident.provider_meta(),
        )

    async def _attempt(
        self, call: UpstreamCall, cfg: CodexConfig, secret: dict[str, Any], ident: Identity, body: dict[str, Any]
    ) -> UpstreamResponse:
        headers = _credential_headers(cfg, secret, ident)
        if await self._wants_websocket(call, cfg):
            opened = await self._websocket(call, cfg, headers, ident, body)
            if opened is not None:
                return opened
        payload = orjson.dumps(body)
        try:
            response = await http_post("codex", f"{call.account.base_url}/responses", content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from None
        resp_headers = _lower(response.headers)
        request_id = resp_headers.get("x-request-id", "")
        try:
            await self._record_headers(call, resp_headers)
            # Any non-2xx is an error: a redirect (not followed) must never pass as a 200.
            if not 200 <= response.status_code < 300:
                raw = await read_bounded(response, _MAX_ERROR_BODY)
                err = errors.classify(
                    status=response.status_code,
                    body=raw,
                    headers=resp_headers,
                    content_type=resp_headers.get("content-type", ""),
                    request_id=request_id,
                )
                await self._note_usage_limit(call, err, resp_headers)
                raise err
            ctype = resp_headers.get("content-type", "")
            # The backend sends SSE without a content type (docs/protocols/codex.md#stream-quirks); only an explicit
            # non-SSE type is wrong.
            if ctype and "text/event-stream" not in ctype:
                raw = await read_bounded(response, _MAX_ERROR_BODY)
                raise errors.classify(
                    status=502 if "html" not in ctype else 403,
                    body=raw,
                    headers=resp_headers,
                    content_type=ctype,
                    request_id=request_id,
                )
            raw_events = relay_events(response, source="Codex", strict_json=False)
            return await self._open_events(
                call, raw_events, lambda _terminal: response.aclose(), resp_headers, request_id, ident
            )
        except httpx.HTTPError as exc:
            await response.aclose()
            raise classify_transport_error(exc) from None
        except BaseException:
            await response.aclose()
            raise

    async def _wants_websocket(self, call: UpstreamCall, cfg: CodexConfig) -> bool:
        # docs/protocols/codex.md#transport-http-and-websocket product rule: the account allows it and the client is
        # on a WebSocket or the
        # catalog flags the model.
        if not (cfg.websockets and (call.session is not None or call.facts.prefer_websockets)):
            return False
        return not await ws_recently_failed(call.account.id, call.upstream_model)

    async def _websocket(
        self, call: UpstreamCall, cfg: CodexConfig, headers: dict[str, str], ident: Identity, body: dict[str, Any]
    ) -> UpstreamResponse | None:
        """Send the request over an upstream socket: the conversation's kept one when it is
        still usable, else a new one. A socket the backend retired (its 60-minute cap, a lost
        continuation, a close while idle) is replaced once, with the full request, unseen by
        the client. None: the handshake failed, use HTTP SSE."""
        kept = await self._kept_socket(call, cfg)
        for retry in (False, True):
            reused = kept is not None
            if kept is None:
                try:
                    conn, resp_headers = await ws_open(ws_url(call.account.base_url), headers)
                except WsHandshakeFailed as exc:
                    # docs/protocols/codex.md#transport-http-and-websocket: fall back to HTTP SSE for this request;
                    # remember it for a while.
                    log.info("codex: WebSocket %s for %s; using HTTP SSE", exc, call.upstream_model)
                    await ws_remember_failure(call.account.id, call.upstream_model, str(exc))
                    return None
                kept = KeptSocket(conn, account_id=call.account.id, headers=resp_headers, session=call.session)
                await self._record_headers(call, resp_headers)
            frame = _frame(body, kept if reused else None, call)
            try:
                return await self._send_on(call, kept, ident, frame)
            except UpstreamError as exc:
                if retry or call.session is None or not _replaceable(exc, reused):
                    raise
                ws_upstream_reconnect(self.provider, exc.code)
                kept = None
        raise AssertionError("unreachable")

    async def _kept_socket(self, call: UpstreamCall, cfg: CodexConfig) -> KeptSocket | None:
        """The conversation's upstream socket if this request may use it; a socket of another
        account (the conversation failed over) or close to the backend's cap is closed."""
        if call.session is None:
            return None
        kept = call.session.slots.get(SLOT)
        if not isinstance(kept, KeptSocket):
            return None
        if kept.account_id == call.account.id and kept.open and kept.age() < cfg.websocket_max_age_seconds:
            return kept
        reason = "account" if kept.account_id != call.account.id else ("closed" if not kept.open else "age")
        if reason != "account":
            ws_upstream_reconnect(self.provider, reason)
        await kept.aclose()
        return None

    async def _send_on(self, call: UpstreamCall, kept: KeptSocket, ident: Identity, frame: bytes) -> UpstreamResponse:
        request_id = kept.headers.get("x-request-id", "")
        try:
            await kept.conn.send(frame.decode())
            return await self._open_events(call, ws_events(kept.conn), kept.release, kept.headers, request_id, ident)
        except ConnectionClosed:
            await kept.aclose()
            raise UpstreamError(
                status=502,
                message="Codex WebSocket closed before the request was sent",
                code="upstream_socket_closed",
                retryable=True,
                request_id=request_id,
            ) from None
        except BaseException:
            # An error frame ends the request; the CLI drops such a socket too.
            await kept.aclose()
            raise

    # ------------------------------------------------------------------ quota signals
    async def _record_headers(self, call: UpstreamCall, headers: dict[str, str]) -> None:
        readings = ratelimits.readings_from_headers(headers)
        family = ratelimits.active_limit(headers)
        if readings or family:
            try:
                await ratelimits.record_readings(
                    get_store(),
                    account_id=call.account.id,
                    model=call.upstream_model,
                    readings=readings,
                    family=family,
                )
            except Exception:  # quota hints must never fail a request
                log.warning("codex: could not record rate-limit headers", exc_info=True)

    async def _record_event(self, call: UpstreamCall, event: dict[str, Any]) -> None:
        try:
            await ratelimits.record_readings(
                get_store(),
                account_id=call.account.id,
                model=call.upstream_model,
                readings=ratelimits.readings_from_event(event),
                family=ratelimits.event_family(event),
            )
        except Exception:
            log.warning("codex: could not record a codex.rate_limits event", exc_info=True)

    async def _note_usage_limit(self, call: UpstreamCall, err: UpstreamError, headers: dict[str, str]) -> None:
        if err.code != "usage_limit_reached" or not err.cooldown:
            return
        store = get_store()
        family = (
            ratelimits.active_limit(headers)
            or await quota_family_for_model(store, account_id=call.account.id, model=call.upstream_model)
            or call.upstream_model  # default: one family per model (docs/protocols/codex.md#errors)
        )
        # Spent until the reset: selection sees zero headroom for exactly this family.
        await quota_snapshot_set(
            store,
            account_id=call.account.id,
            family=family,
            used_percent=100.0,
            resets_at=time.time() + err.cooldown,
            window_minutes=None,
            window="limit",
        )

    # ------------------------------------------------------------------------ events
    async def _open_events(
        self,
        call: UpstreamCall,
        raw_events: AsyncIterator[SseEvent],
        close: Callable[[Mapping[str, Any] | None], Awaitable[Any]],
        headers: dict[str, str],
        request_id: str,
        ident: Identity,
    ) -> UpstreamResponse:
        """Shared by both transports: `raw_events` are SSE events or WebSocket frames;
        `close(terminal)` ends the transport with the terminal event seen, if any."""
        pending: list[dict[str, Any]] = []
        filt = CodexEventFilter(pending.append)

        async def next_visible() -> tuple[dict[str, Any], SseEvent] | None:
            while True:
                try:
                    ev = await anext(raw_events)
                except StopAsyncIteration:
                    return None
                obj, out = filt.feed(ev)
                while pending:
                    await self._record_event(call, pending.pop(0))
                if out is not None:
                    return obj, out

        async def visible() -> AsyncGenerator[SseEvent, None]:
            # codex.* events feed the quota readings and are never forwarded; the stream ends
            # at the terminal event (a WebSocket stays open after it).
            while (item := await next_visible()) is not None:
                yield item[1]
                if filt.terminal is not None:
                    return
            raise CodexStreamError("Codex stream closed before response.completed", "upstream_stream_cut")

        async def error_of(ev: SseEvent) -> UpstreamError:
            return await self._failed(call, orjson.loads(ev.data), headers, request_id)

        raw_close = getattr(raw_events, "aclose", None)
        opened = await open_stream(
            visible(),
            dialect=Dialect.RESPONSES,
            request_id=request_id,
            error_of=error_of,
            closers=(*((raw_close,) if raw_close is not None else ()), lambda: close(filt.terminal)),
            headers={k: v for k, v in headers.items() if k in _KEPT_HEADERS},
            provider_meta=ident.provider_meta(),
        )
        if call.stream:
            return opened
        # The backend insists on streaming: a non-stream client gets the assembled final object.
        return await assemble_response(opened, error_of)

    async def _failed(
        self, call: UpstreamCall, obj: Mapping[str, Any], headers: dict[str, str], request_id: str
    ) -> UpstreamError:
        headers = _event_headers(obj, headers)
        err = errors.stream_error(obj, headers, request_id)
        await self._note_usage_limit(call, err, headers)
        return err


def _refresh_failed(exc: CodexRefreshError, what: str) -> UpstreamError:
    """A failed token refresh: a dead refresh token needs a human, anything else rests a while."""
    return UpstreamError(
        status=401,
        message=f"{what}: {exc}",
        code="upstream_auth_failed",
        retryable=True,
        account_state=AccountState.AUTH_FAILED if exc.terminal else None,
        cooldown=None if exc.terminal else 30.0,
        cooldown_scope=CooldownScope.ACCOUNT,
        client_status=502,
    )


def _credential_headers(
    cfg: CodexConfig, secret: dict[str, Any], ident: Identity, *, compact: bool = False
) -> dict[str, str]:
    """The backend's headers for this account's stored ChatGPT credential."""
    return codex_headers(
        cfg,
        access_token=str(secret.get("access_token") or ""),
        chatgpt_account_id=str(secret.get("account_id") or ""),
        ident=ident,
        fedramp=bool(secret.get("fedramp")),
        compact=compact,
    )


EXECUTOR = CodexExecutor()
