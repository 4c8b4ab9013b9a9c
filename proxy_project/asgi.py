"""ASGI entry point: Django plus the lifespan hooks Django itself does not handle."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from typing import Any

import django
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections, reset_queries
from django.urls import ResolverMatch, URLResolver, get_resolver, set_script_prefix

from observability.requestid import with_request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")
django.setup(set_prefix=False)

# Project modules below read models: imported once Django is set up.
from audit.flusher import usage_flush_forever  # noqa: E402
from audit.services import usage_flush  # noqa: E402
from executors.http import http_clients_close  # noqa: E402
from statestore import get_store  # noqa: E402

_ROUTES_MAX = 64  # remembered URL resolutions: more than the API has routes


class ApiHandler(ASGIHandler):
    """The client API (`/v1/`, health probes) without Django's middleware.

    Sessions, CSRF, auth and messages are admin concerns; under ASGI every sync middleware
    costs a thread hop per request, which profiling showed as the largest share of the
    proxy's own CPU. The API authenticates by key and answers JSON/SSE, so it needs none.
    """

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[str, ResolverMatch] = {}
        self._routes_of: URLResolver | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django wraps each request in a ThreadSensitiveContext, which creates (and joins) a
        # fresh thread for the one thread-sensitive call it makes per request (closing the
        # response): profiling showed that thread churn as ~17% of API CPU. Without it, such
        # calls share the process's single sync thread; the API's own DB work uses db_call.
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ASGIHandler.handle, except that the response is closed on the event loop.

        Django closes it through `sync_to_async`: a hop to the sync thread and back for every
        request (CPU, and a wake-up of another thread on a busy machine). What closing runs here
        is loop-safe: the request_finished receivers left for this handler are `close_caches`
        (the local-memory cache: nothing to close) and `reset_urlconf`, and a stream's
        `abandon` closer schedules its work on the loop (routing/proxy.py)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        # No receiver listens for this handler (see the signal wiring below); asend would still
        # gather two coroutines per request to find that out.
        if signals.request_started.has_listeners(self.__class__):
            await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return
        try:
            response = await self._respond_until_disconnect(request, receive, send)
            if response is None:
                await signals.request_finished.asend(sender=self.__class__)
            else:
                response.close()
        finally:
            body_file.close()

    async def _respond_until_disconnect(self, request: Any, receive: Any, send: Any) -> Any | None:
        """As in Django, a listener ends the view when the client leaves (None: it left). The
        view runs in this task rather than in a second one raced with `asyncio.wait`: one task
        and one wait fewer per request."""
        task = asyncio.current_task()
        assert task is not None
        state = {"finished": False, "left": False}

        async def listen() -> None:
            with contextlib.suppress(RequestAborted):
                await self.listen_for_disconnect(receive)
            if not state["finished"]:
                state["left"] = True
                task.cancel()

        listener = asyncio.create_task(listen())
        try:
            response = await self._respond(request, send)
        except asyncio.CancelledError:
            if not state["left"]:
                raise  # cancelled from outside (server shutdown): not ours to swallow
            task.uncancel()
            return None
        finally:
            state["finished"] = True
            listener.cancel()
        if state["left"]:  # it left during the send (_respond absorbed the cancellation)
            task.uncancel()
        return response

    async def _respond(self, request: Any, send: Any) -> Any:
        response = await self.run_get_response(request)
        with contextlib.suppress(asyncio.CancelledError):  # the client left during the send
            await self.send_response(response, send)
        return response

    async def send_response(self, response: Any, send: Any) -> None:
        from routing.api.views import SseResponse

        if not isinstance(response, SseResponse):
            await super().send_response(response, send)
            return
        # Streams: each part is one event's bytes; send it as it comes, with none of Django's
        # per-part wrapping (measured in docs/performance.md). Closing the generator (also when
        # the client goes away and this task is cancelled) ends the relay and its upstream.
        headers = [(k.encode("ascii"), v.encode("latin-1")) for k, v in response.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        body = getattr(send, "__wrapped__", send)
        async with contextlib.aclosing(response.parts) as parts:
            async for part in parts:
                await body({"type": "http.response.body", "body": part, "more_body": True})
        await body({"type": "http.response.body"})

    def resolve_request(self, request: Any) -> ResolverMatch:
        """Django's URL resolving, remembered per path for the API's fixed routes: the same
        path always resolves to the same view (~25 µs per request of pattern matching saved).
        Routes with arguments (the catch-all 404) are resolved every time, so the memo stays
        as small as the API."""
        resolver = get_resolver()
        if resolver is not self._routes_of:
            self._routes, self._routes_of = {}, resolver  # the URL conf changed (tests)
        match = self._routes.get(request.path_info)
        if match is None:
            match = resolver.resolve(request.path_info)
            if not match.args and not match.kwargs and len(self._routes) < _ROUTES_MAX:
                self._routes[request.path_info] = match
        request.resolver_match = match
        return match

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # BaseHandler's own entry points (not in the type stubs).
        get_response = self._get_response_async if is_async else self._get_response  # type: ignore[attr-defined]
        self._middleware_chain = convert_exception_to_response(get_response)


# Django recycles DB connections around every request through these signals; each sync
# receiver is another thread hop. The API's database work runs in infra.db.db_call,
# which recycles connections itself, so the receivers stay on for the admin handler only.
signals.request_started.disconnect(reset_queries)
signals.request_started.disconnect(close_old_connections)
signals.request_finished.disconnect(close_old_connections)
signals.request_started.connect(reset_queries, sender=ASGIHandler)
signals.request_started.connect(close_old_connections, sender=ASGIHandler)
signals.request_finished.connect(close_old_connections, sender=ASGIHandler)

# The static handler only intercepts /static/ (admin assets); everything else passes
# straight to Django, so no extra server or collectstatic step is needed.
django_app = ASGIStaticFilesHandler(ASGIHandler())
api_app = ApiHandler()
_API_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics")

# Garbage collector: a large request body is hundreds of thousands of objects, and each full
# collection walks every tracked object in the process while holding the GIL, which stalled
# the event loop for other requests (issue 17 F3; routing/intake.py moves the rest of the
# work off the loop). Objects alive after start-up (Django, the URL conf, imported modules)
# are frozen out of every collection, and young collections run every 10,000 allocations
# instead of 700. Request bodies are acyclic JSON and freed by reference counting anyway.
# Measured on a 60,000-message body (loaded machine): worst loop stall 0.20-0.32 s -> 0.03-0.08 s.
gc.freeze()
gc.set_threshold(10_000, 10, 10)


async def _startup(state: dict[str, Any]) -> None:
    if not get_store().shared:
        state["flusher"] = asyncio.create_task(usage_flush_forever())


async def _shutdown(state: dict[str, Any]) -> None:
    task = state.pop("flusher", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Whatever is still buffered is written before the process exits.
    with contextlib.suppress(Exception):
        await usage_flush()
    await http_clients_close()


_WS_BODY = (
    b'{"error":{"message":"WebSocket transport is only served on /v1/responses; use HTTP here",'
    b'"type":"invalid_request_error","param":null,"code":"websocket_not_supported"}}'
)


async def _refuse_websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer a WebSocket upgrade the proxy cannot serve with 426: Codex CLI then falls back
    to HTTP at once (a 404/405 would cost it seven retries first). /v1/responses is served
    (routing/api/websocket.py)."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 426,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": _WS_BODY})
    else:
        await send({"type": "websocket.close", "code": 1008})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        state: dict[str, Any] = {}
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _startup(state)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _shutdown(state)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        if scope["path"] == "/v1/responses":
            from routing.api.websocket import responses_websocket

            await responses_websocket(scope, receive, send)
        else:
            await _refuse_websocket(scope, receive, send)
        return
    if scope["type"] == "http" and scope["path"].startswith(_API_PREFIXES):
        # Binds the request id (logs, usage record) and adds x-request-id to every answer.
        await with_request_id(api_app, scope, receive, send)  # type: ignore[arg-type]
        return
    await django_app(scope, receive, send)
