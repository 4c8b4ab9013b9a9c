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
            # At the end of the session, a client socket left open (a WebSocket, a keep-alive
            # connection) must not hold the teardown until stop()'s join gives up.
            timeout_graceful_shutdown=2,
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


class ProxyProcess:
    """The proxy in a uvicorn subprocess of its own, on the test database (PostgreSQL only: a
    SQLite test database lives in this process's memory) and the test's Redis, if any.

    For measurements that must see one worker alone: the live server thread shares this
    process's GIL with the fakes and the test client, so a stall there is not the proxy's.
    """

    def __init__(self, **env: str) -> None:
        self._extra = env
        self._proc: Any = None
        self.url = ""

    def __enter__(self) -> ProxyProcess:
        import os
        import socket
        import subprocess
        import sys

        import httpx
        from django.conf import settings
        from django.db import connection

        db = settings.DATABASES["default"]
        if connection.vendor != "postgresql":
            raise RuntimeError("ProxyProcess needs PostgreSQL (CI=true)")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "proxy_project.settings.base",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "STATE_KEY_PREFIX": settings.STATE_KEY_PREFIX,
            "PROXY_CREDENTIAL_KEYS": ",".join(settings.CREDENTIAL_KEYS),
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "PROXY_ALLOW_PRIVATE_UPSTREAMS": "true",
            **self._extra,
        }
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        args = ["--fd", str(sock.fileno()), "--lifespan", "off", "--log-level", "warning", "--loop", "asyncio"]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "proxy_project.asgi:application", *args],
            env=env,
            pass_fds=(sock.fileno(),),
        )
        sock.close()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("proxy subprocess did not start")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=15)
            self._proc = None
