"""The API's ASGI handler: URL resolving remembered for fixed routes only; disconnects end views."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.test import RequestFactory

from proxy_project.asgi import _ROUTES_MAX, ApiHandler


def _request(path: str) -> Any:
    return RequestFactory().post(path)


def test_fixed_routes_are_remembered_and_catch_all_paths_are_not() -> None:
    handler = ApiHandler()
    first = handler.resolve_request(_request("/v1/chat/completions"))
    again = handler.resolve_request(req := _request("/v1/chat/completions"))
    assert again is first and req.resolver_match is first
    assert first.url_name == "chat_completions" and first.route == "v1/chat/completions"
    for n in range(_ROUTES_MAX * 2):  # an attacker's endless unknown paths
        match = handler.resolve_request(_request(f"/v1/nope/{n}"))
        assert match.kwargs == {"path": f"nope/{n}"}
    assert set(handler._routes) == {"/v1/chat/completions"}


async def test_a_client_that_leaves_ends_the_view_and_the_handler_finishes() -> None:
    """The listener cancels the view in the handler's own task; the handler itself returns."""
    handler = ApiHandler()
    view_cancelled = asyncio.Event()
    left = asyncio.Event()

    async def slow_view(request: Any, send: Any) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            view_cancelled.set()
            raise

    handler._respond = slow_view  # type: ignore[method-assign]

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    task = asyncio.create_task(handler._respond_until_disconnect(object(), receive, None))
    await asyncio.sleep(0.01)
    left.set()
    assert await asyncio.wait_for(task, 5) is None
    assert view_cancelled.is_set() and not task.cancelled()


async def test_a_cancellation_from_outside_is_not_swallowed() -> None:
    handler = ApiHandler()

    async def slow_view(request: Any, send: Any) -> Any:
        await asyncio.sleep(30)

    handler._respond = slow_view  # type: ignore[method-assign]

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    task = asyncio.create_task(handler._respond_until_disconnect(object(), receive, None))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
