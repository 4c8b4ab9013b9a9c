"""Framework cost of a client WebSocket: a plain ASGI route (what routing/api/websocket.py is)
vs a Django Channels consumer (no channel layer), driven in-process: no server, no network,
only what each framework does per socket and per message.

Channels is not a dependency of the product; to reproduce, in a scratch venv:

    python -m venv /tmp/chvenv && /tmp/chvenv/bin/pip install channels==4.3.2 django==5.2.19
    /tmp/chvenv/bin/python bench/bench_ws_asgi.py raw 20000
    /tmp/chvenv/bin/python bench/bench_ws_asgi.py channels 20000

Prints CPU per message round trip (receive one text frame, send it back) and per socket
(accept, one message, close), after Django is set up in both cases. Results: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import django
from django.conf import settings

MODE = sys.argv[1] if len(sys.argv) > 1 else "raw"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
settings.configure(SECRET_KEY="bench", INSTALLED_APPS=["channels"] if MODE == "channels" else [], USE_TZ=True)
django.setup()

App = Any
app: App
if MODE == "channels":
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class Echo(AsyncWebsocketConsumer):  # type: ignore[misc]
        async def connect(self) -> None:
            await self.accept()

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            await self.send(text_data=text_data)

    app = ProtocolTypeRouter({"websocket": URLRouter([path("v1/responses", Echo.as_asgi())])})
else:

    async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/v1/responses":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg["text"]})

    app = raw_app


async def one_socket(n: int, payload: str) -> None:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    scope = {
        "type": "websocket", "path": "/v1/responses", "raw_path": b"/v1/responses", "headers": [],
        "query_string": b"", "subprotocols": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }  # fmt: skip
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "websocket.accept"
    for _ in range(n):
        await inbox.put({"type": "websocket.receive", "text": payload})
        await outbox.get()
    await inbox.put({"type": "websocket.disconnect", "code": 1000})
    await task


async def main() -> None:
    payload = '{"type":"response.output_text.delta","delta":"hello"}'
    await one_socket(100, payload)  # warm-up
    t = time.process_time()
    await one_socket(N, payload)
    per_msg = (time.process_time() - t) / N * 1e6
    t = time.process_time()
    await asyncio.gather(*(one_socket(1, payload) for _ in range(500)))
    per_socket = (time.process_time() - t) / 500 * 1e6
    print(f"{MODE}: {per_msg:.1f} us CPU per message round trip; {per_socket:.0f} us CPU per socket")


asyncio.run(main())
