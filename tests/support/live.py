"""Run any ASGI app (the proxy itself) with uvicorn on 127.0.0.1 in a background thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class LiveASGIServer:
    def __init__(self, app: Any, *, lifespan: str = "off") -> None:
        self._app = app
        self.in_flight = 0
        config = uvicorn.Config(
            self._counted,
            host="127.0.0.1",
            port=0,
            lifespan=lifespan,
            interface="asgi3",
            log_level="warning",
            loop="asyncio",
            http="httptools",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-proxy", daemon=True)

    async def _counted(self, scope: Any, receive: Any, send: Any) -> None:
        # Counting whole ASGI calls lets a test wait until every request (including the
        # usage record written after the last byte) has finished.
        self.in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def wait_idle(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.in_flight == 0

    def start(self, timeout: float = 10.0) -> LiveASGIServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        sock = self._server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
