"""GitLab Duo upstream: a GitLab account (OAuth or PAT) → gateway token → AI gateway proxy.

Per request: resolve the model (aliases), pick a transport (transport.py), get a gateway grant
(memory → store → DB → single-flight mint; executors/gitlab/grants.py), send with the pooled
client, and hand back the upstream's own dialect. Streams are relayed event by event; the
handshake events are read before returning so an error at the start can still fail over.

A gateway 401 is classified `refresh_credential`: dispatch calls refresh_credential (drop the
token, re-mint) and retries once. A stream already flowing is never touched when its token
expires: the gateway checks the token at request start only.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from accounts.selectors import AccountInfo
from executors.base import UpstreamCall, UpstreamError, UpstreamResponse
from executors.errors import bad_response, classify_transport_error, closing_on_error
from executors.gitlab import client as gl
from executors.gitlab.catalog import gitlab_model_provider, gitlab_upstream_model
from executors.gitlab.config import instance_url as config_instance_url
from executors.gitlab.errors import (
    BACKOFF_MAX,
    BACKOFF_START,
    ResponsesOnly,
    classify_fallback_error,
    classify_gateway_error,
    classify_stream_error,
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
from executors.http import http_post
from executors.streaming import open_stream, read_bounded, relay_events
from formats import Dialect, SseEvent
from statestore import StateStore, get_store

_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


class GitLabExecutor:
    provider = "gitlab"
    billing = "subscription"

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
            return await self._send_gateway(call, model, transport, grant, store, family)
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
        async with closing_on_error(response.aclose):
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
        async with closing_on_error(response.aclose):
            # Any non-2xx is an error: a redirect (not followed) must never pass as a 200.
            if not 200 <= response.status_code < 300:
                raw = await read_bounded(response, _MAX_ERROR_BODY)
                text = gl.error_text(_loads(raw), raw.decode(errors="replace"))
                raise classify_fallback_error(response.status_code, text, response.headers)
            if not call.stream:
                body = await _json_body(response, "", allow_string=True)
                return UpstreamResponse(
                    dialect=Dialect.CHAT, body=completion_to_chat(body, model, prompt_text), headers=headers
                )
            if response.headers.get("x-streaming-format", "").lower() != "sse" and "text/event-stream" not in (
                response.headers.get("content-type", "")
            ):
                raise bad_response("GitLab code suggestions answered without SSE framing")
            mapper = CodeSuggestionsToChat(model, prompt_text)
            raw_events = relay_events(response, source="GitLab", strict_json=False)
            out = UpstreamResponse(
                dialect=Dialect.CHAT, events=map_fallback_stream(raw_events, mapper), headers=headers
            )
            out._closers.append(raw_events.aclose)
            out._closers.append(response.aclose)
            return out


# ------------------------------------------------------------------------------ helpers


def _backoff_key(account_id: int, family: str) -> str:
    return f"gitlab:429:{account_id}:{family}"


async def _backoff(store: StateStore, account_id: int, family: str) -> float:
    """15 s, 30 s, 60 s ... 5 min for consecutive vendor 429s (the gateway drops Retry-After)."""
    n = await store.incr(_backoff_key(account_id, family), ttl=BACKOFF_MAX * 2)
    return float(min(BACKOFF_MAX, BACKOFF_START * 2 ** max(0, n - 1)))


async def _send(prepared: Prepared) -> httpx.Response:
    try:
        return await http_post("gitlab", prepared.url, content=orjson.dumps(prepared.body), headers=prepared.headers)
    except httpx.HTTPError as exc:
        raise classify_transport_error(exc) from None


async def _json_body(response: httpx.Response, request_id: str, *, allow_string: bool = False) -> Any:
    raw = await read_bounded(response, _MAX_BODY)
    await response.aclose()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_response("GitLab returned a body that is not JSON", request_id) from None
    if not isinstance(body, dict) and not (allow_string and isinstance(body, str)):
        raise bad_response("GitLab returned a JSON body that is not an object", request_id)
    return body


def _texts(body: dict[str, Any]) -> list[Any]:
    current = body.get("current_file") or {}
    return [current.get("content_above_cursor", ""), body.get("content", "")]


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


async def _open_stream(response: httpx.Response, dialect: Dialect, request_id: str) -> UpstreamResponse:
    ctype = response.headers.get("content-type", "")
    if "text/event-stream" not in ctype:
        raise bad_response(f"GitLab AI gateway answered a stream with {ctype or 'no type'}", request_id)

    async def error_of(ev: SseEvent) -> UpstreamError:
        return classify_stream_error(_loads(ev.data), request_id)

    return await open_stream(
        relay_events(response, source="GitLab"),
        dialect=dialect,
        request_id=request_id,
        error_of=error_of,
        closers=(response.aclose,),
    )


EXECUTOR = GitLabExecutor()

__all__ = ["EXECUTOR", "GitLabExecutor", "gitlab_upstream_model"]
