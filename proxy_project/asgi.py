"""ASGI entry point: Django plus the lifespan hooks Django itself does not handle."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")

# The static handler only intercepts /static/ (admin assets); everything else passes
# straight to Django, so no extra server or collectstatic step is needed.
django_app = ASGIStaticFilesHandler(get_asgi_application())


async def _startup(state: dict[str, Any]) -> None:
    from formats.tokens import count_text
    from statestore import get_store

    # Loading the tokenizer's tables takes seconds: do it now, off the event loop, instead of
    # inside the first request that needs a local token count.
    state["tokenizer"] = asyncio.create_task(asyncio.to_thread(count_text, "warm up"))

    if not get_store().shared:
        from audit.flusher import usage_flush_forever

        state["flusher"] = asyncio.create_task(usage_flush_forever())


async def _shutdown(state: dict[str, Any]) -> None:
    from audit.services import usage_flush
    from executors.http import http_clients_close

    task = state.pop("flusher", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Whatever is still buffered is written before the process exits.
    with contextlib.suppress(Exception):
        await usage_flush()
    await http_clients_close()


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
    await django_app(scope, receive, send)
