"""GitLab Duo upstream: a GitLab account (OAuth or PAT) → gateway token → AI gateway proxy.

Per request: resolve the model (aliases), pick a transport (transport.py), get a gateway grant
(memory → store → DB → single-flight mint; executors/gitlab/grants.py), send with the pooled
client, and hand back the upstream's own dialect. Streams are relayed event by event; the
handshake events are read before returning so an error at the start can still fail over.

A gateway 401 drops the token, re-mints once and retries once. A stream already flowing is
never touched when its token expires: the gateway checks the token at request start only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from accounts.selectors import AccountInfo
from executors.base import CooldownScope, UpstreamCall, UpstreamError, UpstreamResponse, UpstreamStreamError
from executors.errors import classify_transport_error
from executors.gitlab import client as gl
from executors.gitlab.catalog import gitlab_model_provider, gitlab_upstream_model
from executors.gitlab.config import instance_url as config_instance_url
from executors.gitlab.errors import (
    BACKOFF_MAX,
    BACKOFF_START,
    GatewayAuthRejected,
    ResponsesOnly,
    classify_gateway_error,
    from_gitlab_error,
)
from executors.gitlab.exceptions import GitLabError
from executors.gitlab.grants import GatewayGrant, gitlab_gateway_grant, gitlab_gateway_grant_reject
from executors.gitlab.oauth import gitlab_access_token
from executors.gitlab.selectors import gitlab_account_config
from executors.gitlab.transport import (
    GATEWAY_RESPONSES,
    CodeSuggestionsToChat,
    GatewayTransport,
    Prepared,
    Transport,
    completion_to_chat,
    map_fallback_stream,
    transport_for,
)
from executors.http import http_client
from executors.streaming import event_type, read_bounded, relay_events
from formats import Dialect, SseEvent
from statestore import StateStore, get_store

_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
# Events that only open a stream; an error right after them can still fail over (§8 "stream").
_HANDSHAKE = {
    Dialect.MESSAGES: frozenset({"message_start", "ping"}),
    Dialect.RESPONSES: frozenset({"response.created", "response.in_progress"}),
    Dialect.CHAT: frozenset(),
}
_MAX_HANDSHAKE_EVENTS = 8


class GitLabExecutor:
    provider = "gitlab"

    # ------------------------------------------------------------------ credentials

    async def refresh_credential(self, account: AccountInfo) -> bool:
        """Re-mint the gateway token (refreshing the OAuth pair first if needed); True if it changed."""
        store = get_store()
        client = gl.pooled_client()
        try:
            current = await gitlab_gateway_grant(account_id=account.id, store=store, client=client, min_life=0)
            await gitlab_gateway_grant_reject(account_id=account.id, store=store, token=current.token)
            fresh = await gitlab_gateway_grant(
                account_id=account.id, store=store, client=client, rejected=current.token
            )
        except GitLabError as exc:
            raise from_gitlab_error(exc) from None
        return fresh.token != current.token

    async def _grant(self, account: AccountInfo, store: StateStore, rejected: str | None = None) -> GatewayGrant:
        try:
            return await gitlab_gateway_grant(
                account_id=account.id, store=store, client=gl.pooled_client(), rejected=rejected
            )
        except GitLabError as exc:
            raise from_gitlab_error(exc) from None

    # ------------------------------------------------------------------------- open

    async def open(self, call: UpstreamCall) -> UpstreamResponse:
        config = gitlab_account_config(call.account)
        model = gitlab_upstream_model(call.upstream_model, config)
        transport = transport_for(call, model, config)
        if isinstance(transport, GatewayTransport):
            return await self._open_gateway(call, model, transport, config)
        return await self._open_fallback(call, model, transport, config)

    async def _open_gateway(
        self, call: UpstreamCall, model: str, transport: GatewayTransport, config: dict[str, Any]
    ) -> UpstreamResponse:
        store = get_store()
        grant = await self._grant(call.account, store)
        family = gitlab_model_provider(model, config) or "gitlab"
        try:
            try:
                return await self._send_gateway(call, model, transport, grant, store, family)
            except GatewayAuthRejected:
                # Expired/revoked token or stale headers: drop it, re-mint once, retry once (§8).
                await gitlab_gateway_grant_reject(account_id=call.account.id, store=store, token=grant.token)
                grant = await self._grant(call.account, store, rejected=grant.token)
                return await self._send_gateway(call, model, transport, grant, store, family)
        except GatewayAuthRejected as exc:
            raise UpstreamError(
                status=exc.status,
                message=f"GitLab AI gateway refused a freshly minted token: {exc.text}",
                code="gitlab_gateway_auth_failed",
                retryable=True,
                cooldown=300.0,
                cooldown_scope=CooldownScope.ACCOUNT,
                client_status=502,
            ) from None
        except ResponsesOnly:
            # The model exists only on /v1/responses: the same request, translated, once.
            return await self._send_gateway(call, model, GATEWAY_RESPONSES, grant, store, family)

    async def _send_gateway(
        self,
        call: UpstreamCall,
        model: str,
        transport: GatewayTransport,
        grant: GatewayGrant,
        store: StateStore,
        family: str,
    ) -> UpstreamResponse:
        prepared = transport.prepare(call, model, grant)
        response = await _send(prepared)
        request_id = response.headers.get("x-request-id", "") or response.headers.get("request-id", "")
        try:
            # Any non-2xx is an error: a redirect (not followed) must never pass as a 200.
            if not 200 <= response.status_code < 300:
                raw = await read_bounded(response, _MAX_ERROR_BODY)
                backoff = await _backoff(store, call.account.id, family) if response.status_code == 429 else 0.0
                raise classify_gateway_error(
                    status=response.status_code,
                    headers=response.headers,
                    raw=raw,
                    request_id=request_id,
                    backoff=backoff,
                )
            if response.status_code == 200:
                await store.delete(_backoff_key(call.account.id, family))
            if not call.stream:
                body = await _json_body(response, request_id)
                return UpstreamResponse(dialect=transport.dialect, request_id=request_id, body=body)
            return await _open_stream(response, transport.dialect, request_id)
        except httpx.HTTPError as exc:
            await response.aclose()
            raise classify_transport_error(exc) from None
        except BaseException:
            await response.aclose()
            raise

    # --------------------------------------------------------------------- fallback

    async def _open_fallback(
        self, call: UpstreamCall, model: str, transport: Transport, config: dict[str, Any]
    ) -> UpstreamResponse:
        # Built first: an unsupported feature is the client's 400 before any GitLab call.
        instance = config_instance_url(config)
        prepared = transport.prepare(call, model, instance, "")  # type: ignore[attr-defined]
        try:
            token, _kind = await gitlab_access_token(
                account_id=call.account.id, store=get_store(), client=gl.pooled_client()
            )
        except GitLabError as exc:
            raise from_gitlab_error(exc) from None
        prepared.headers["Authorization"] = f"Bearer {token}"
        prompt_text = "\n".join(str(v) for v in _texts(prepared.body))
        response = await _send(prepared)
        headers = {"x-gitlab-transport": f"{transport.name} (lossy)"}
        try:
            # Any non-2xx is an error: a redirect (not followed) must never pass as a 200.
            if not 200 <= response.status_code < 300:
                raw = await read_bounded(response, _MAX_ERROR_BODY)
                raise _fallback_error(response.status_code, raw, response.headers)
            if not call.stream:
                body = await _json_body(response, "", allow_string=True)
                return UpstreamResponse(
                    dialect=Dialect.CHAT, body=completion_to_chat(body, model, prompt_text), headers=headers
                )
            if response.headers.get("x-streaming-format", "").lower() != "sse" and "text/event-stream" not in (
                response.headers.get("content-type", "")
            ):
                raise UpstreamError(
                    status=502,
                    message="GitLab code suggestions answered without SSE framing",
                    retryable=True,
                    code="upstream_bad_response",
                )
            mapper = CodeSuggestionsToChat(model, prompt_text)
            raw_events = relay_events(response, source="GitLab", strict_json=False)
            out = UpstreamResponse(
                dialect=Dialect.CHAT, events=map_fallback_stream(raw_events, mapper), headers=headers
            )
            out._closers.append(raw_events.aclose)
            out._closers.append(response.aclose)
            return out
        except httpx.HTTPError as exc:
            await response.aclose()
            raise classify_transport_error(exc) from None
        except BaseException:
            await response.aclose()
            raise


# ------------------------------------------------------------------------------ helpers


def _backoff_key(account_id: int, family: str) -> str:
    return f"gitlab:429:{account_id}:{family}"


async def _backoff(store: StateStore, account_id: int, family: str) -> float:
    """15 s, 30 s, 60 s ... 5 min for consecutive vendor 429s (the gateway drops Retry-After)."""
    n = await store.incr(_backoff_key(account_id, family), ttl=BACKOFF_MAX * 2)
    return float(min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, n - 1)))


async def _send(prepared: Prepared) -> httpx.Response:
    client = http_client("gitlab")
    request = client.build_request("POST", prepared.url, content=orjson.dumps(prepared.body), headers=prepared.headers)
    try:
        return await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise classify_transport_error(exc) from None


async def _json_body(response: httpx.Response, request_id: str, *, allow_string: bool = False) -> Any:
    raw = await read_bounded(response, _MAX_BODY)
    await response.aclose()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            status=502,
            message="GitLab returned a body that is not JSON",
            retryable=True,
            request_id=request_id,
            code="upstream_bad_response",
        ) from None
    if not isinstance(body, dict) and not (allow_string and isinstance(body, str)):
        raise UpstreamError(
            status=502,
            message="GitLab returned a JSON body that is not an object",
            retryable=True,
            request_id=request_id,
            code="upstream_bad_response",
        )
    return body


def _texts(body: dict[str, Any]) -> list[Any]:
    current = body.get("current_file") or {}
    return [current.get("content_above_cursor", ""), body.get("content", "")]


def _fallback_error(status: int, raw: bytes, headers: httpx.Headers) -> UpstreamError:
    text = gl.error_text(_loads(raw), raw.decode(errors="replace"))
    message = f"GitLab instance: {text}"
    if status == 401:
        return UpstreamError(
            status=401,
            message=f"{message} (no Duo access or the feature is disabled)",
            code="gitlab_no_duo_access",
            retryable=True,
            cooldown=3600.0,
            cooldown_scope=CooldownScope.ACCOUNT,
            client_status=502,
        )
    if status == 404:
        return UpstreamError(
            status=404,
            message=f"{message} (this fallback is not enabled on the instance)",
            code="gitlab_fallback_unavailable",
            retryable=True,
            cooldown=3600.0,
            cooldown_scope=CooldownScope.MODEL,
            client_status=502,
        )
    if status == 429:
        from executors.errors import retry_after_seconds

        wait = retry_after_seconds(headers)
        return UpstreamError(
            status=429,
            message=message,
            code="upstream_rate_limited",
            retryable=True,
            cooldown=wait if wait is not None else 60.0,
            client_status=429,
        )
    if status in (400, 413, 422):
        return UpstreamError(status=status, message=message, code="invalid_request", retryable=False)
    return UpstreamError(
        status=status,
        message=message,
        retryable=True,
        cooldown=5.0,
        cooldown_scope=CooldownScope.ACCOUNT,
        client_status=502,
    )


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _error_event(ev: SseEvent, dialect: Dialect) -> bool:
    kind = event_type(ev)
    if kind in ("error", "response.failed"):
        return True
    return dialect is Dialect.CHAT and ev.data.startswith(b'{"error"')


def _stream_error(ev: SseEvent, request_id: str) -> UpstreamError:
    obj = _loads(ev.data)
    err: Any = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(obj, dict) and obj.get("type") == "response.failed":
        err = (obj.get("response") or {}).get("error")
    err = err if isinstance(err, dict) else (obj if isinstance(obj, dict) else {})
    etype = str(err.get("type") or err.get("code") or "")
    message = f"GitLab AI gateway stream error: {err.get('message') or etype or 'unknown'}"
    if "rate_limit" in etype:
        return UpstreamError(
            status=429,
            message=message,
            code=etype,
            retryable=True,
            cooldown=BACKOFF_START,
            request_id=request_id,
            client_status=429,
        )
    # Overloaded / api_error at the start of a stream: transient, fail over without cooldown.
    return UpstreamError(
        status=502, message=message, code=etype or "upstream_error", retryable=True, request_id=request_id
    )


async def _open_stream(response: httpx.Response, dialect: Dialect, request_id: str) -> UpstreamResponse:
    ctype = response.headers.get("content-type", "")
    if "text/event-stream" not in ctype:
        raise UpstreamError(
            status=502,
            message=f"GitLab AI gateway answered a stream with {ctype or 'no type'}",
            retryable=True,
            request_id=request_id,
            code="upstream_bad_response",
        )
    events = relay_events(response, source="GitLab")
    head: list[SseEvent] = []
    handshake = _HANDSHAKE[dialect]
    try:
        # Read the handshake and the first real event: an error there still fails over.
        while True:
            ev = await anext(events)
            if _error_event(ev, dialect):
                raise _stream_error(ev, request_id)
            head.append(ev)
            if event_type(ev) not in handshake or len(head) >= _MAX_HANDSHAKE_EVENTS:
                break
    except StopAsyncIteration:
        raise UpstreamError(
            status=502,
            message="GitLab AI gateway stream ended before any content",
            retryable=True,
            request_id=request_id,
            code="upstream_empty_stream",
        ) from None
    except UpstreamStreamError as exc:
        raise UpstreamError(
            status=502, message=str(exc), retryable=True, request_id=request_id, code=exc.code
        ) from None

    async def chained() -> AsyncIterator[SseEvent]:
        for item in head:
            yield item
        async for item in events:
            yield item

    out = UpstreamResponse(dialect=dialect, request_id=request_id, events=chained())
    out._closers.append(events.aclose)
    out._closers.append(response.aclose)
    return out


EXECUTOR = GitLabExecutor()

__all__ = ["EXECUTOR", "GitLabExecutor", "gitlab_upstream_model"]
