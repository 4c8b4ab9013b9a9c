"""The same SSE stream served two ways by one ASGI app, for bench/bench_asgi_send.py.

- ``POST /raw?n=N&ms=M``: plain ASGI: one ``http.response.body`` message per event, nothing else.
- ``POST /v1/stream?n=N&ms=M``: the product's API path: ``proxy_project.asgi.application`` (request
  ids, the middleware-free ``ApiHandler``), a django-ninja async view returning the
  response class ``routing/api/views.py`` uses for streams, over the same async generator.

Both generators sleep ``M`` ms before each event (an upstream's pacing), so the difference in
server CPU per event is what Django's response path adds to the raw ASGI send.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import parse_qs

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.asgi_send_settings"

from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path
from ninja import NinjaAPI

from proxy_project.asgi import application as product

try:  # the response class routing/api/views.py uses, where it has its own
    from routing.api.views import SseResponse as _Response
except ImportError:
    _Response = StreamingHttpResponse  # type: ignore[misc,assignment]

EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model",'
    b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
)
SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}


async def events(n: int, ms: float) -> AsyncGenerator[bytes, None]:
    for _ in range(n):
        if ms:
            await asyncio.sleep(ms / 1000)
        yield EVENT
    yield b"data: [DONE]\n\n"


def _params(query: bytes | str) -> tuple[int, float]:
    q = parse_qs(query.decode() if isinstance(query, bytes) else query)
    return min(int(q.get("n", ["200"])[0]), 10_000), float(q.get("ms", ["20"])[0])


api = NinjaAPI(urls_namespace="bench_stream", docs_url=None)


@api.post("/stream")
async def stream(request: HttpRequest) -> StreamingHttpResponse:
    n, ms = _params(request.META.get("QUERY_STRING", ""))
    return _Response(events(n, ms), headers=SSE)


urlpatterns = [path("v1/", api.urls)]


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    n, ms = _params(scope.get("query_string", b""))
    headers = [(k.encode(), v.encode()) for k, v in SSE.items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    async for ev in events(n, ms):
        await send({"type": "http.response.body", "body": ev, "more_body": True})
    await send({"type": "http.response.body"})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/raw":
        await raw(scope, receive, send)
    else:
        await product(scope, receive, send)
