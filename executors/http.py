"""Pooled httpx.AsyncClients per event loop and upstream kind, with explicit timeouts.

The executors speak httpx; underneath, the transport is aiohttp (`httpx-aiohttp`, the transport
the official `openai` SDK offers as its aiohttp option). Measured in the product it cost less
CPU on every bench workload than httpx's own transport (httpcore) — about a third less per
streamed event — with its C HTTP parser and a pool whose cost does not grow with its size
(docs/performance.md). Settings keep their meaning:

- timeouts: connect → aiohttp `sock_connect`, read → `sock_read` (longest gap between two reads),
  pool → `connect` (waiting for a pooled connection, connecting included). aiohttp has no write
  timeout: an upstream that stops reading a request body is caught by the read timeout instead;
- `UPSTREAM_MAX_CONNECTIONS` is the pool's limit per kind and loop; idle connections live 30 s;
- redirects are never followed, no proxy or netrc from the environment, certifi's CA bundle
  (the same context httpx builds).

Errors reach the executors as the same httpx exceptions as before; `_Transport` fixes where
httpx-aiohttp 0.2.0 differs (a refused connection came out as a ConnectTimeout, which the
executors would report as a timeout; some aiohttp errors were not mapped at all), and `_Stream`
keeps the bytes that arrived before a cut (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import AsyncIterator, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Client]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def _httpx_errors(*, reading: bool) -> Iterator[None]:
    """Whatever aiohttp raises leaves as the httpx exception httpcore would have raised."""
    try:
        yield
    except httpx.TimeoutException as exc:
        if isinstance(exc.__cause__, TimeoutError) or exc.__cause__ is None:
            raise  # a real timeout (aiohttp's timeout errors are TimeoutErrors)
        # httpx-aiohttp maps every aiohttp connection error to ConnectTimeout.
        raise (httpx.ReadError if reading else httpx.ConnectError)(str(exc)) from exc.__cause__
    except TimeoutError as exc:
        raise (httpx.ReadTimeout if reading else httpx.PoolTimeout)(str(exc) or "timed out") from exc
    except aiohttp.ClientError as exc:  # e.g. a malformed status line or header from the upstream
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc


class _Stream(httpx.AsyncByteStream):
    """The response body as it arrives, with httpcore's order of events at a cut: aiohttp
    raises a broken connection before handing out bytes that arrived ahead of it (its
    StreamReader checks for the error first), which loses the last events before an
    upstream's mid-stream cut — or the whole stream when the cut follows at once. Those bytes
    are handed out first here (read from the reader's buffer: aiohttp has no public call for
    it; aiohttp is pinned and the cut tests cover it)."""

    def __init__(self, inner: AiohttpResponseStream) -> None:
        self._inner = inner
        self._content = inner._aiohttp_response.content  # httpx-aiohttp keeps the aiohttp response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._content
        with _httpx_errors(reading=True):
            while True:
                try:
                    chunk = await content.readany()
                except aiohttp.ClientError:
                    buffered = content._buffer  # private: see the class docstring
                    rest = b"".join(buffered)
                    buffered.clear()
                    if rest:
                        yield rest
                    raise
                if not chunk:
                    return
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors(reading=True):
            await self._inner.aclose()


class _Transport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _httpx_errors(reading=False):
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, AiohttpResponseStream)
        response.stream = _Stream(response.stream)
        return response


class _Client(httpx.AsyncClient):
    """httpx's client, plus the one lean call the executors post through (`post_streamed`)."""

    def __init__(self, *, transport: _Transport, **kwargs: Any) -> None:
        super().__init__(transport=transport, **kwargs)
        self._upstream = transport
        self._timeouts = self.timeout.as_dict()

    async def post_streamed(self, url: httpx.URL, content: bytes, headers: dict[str, str]) -> httpx.Response:
        """`send(build_request("POST", ...), stream=True)` without the machinery this client
        never uses (~0.1 ms of a request's CPU, docs/performance.md): the same request, headers
        and timeouts reach the same transport. Skipped: redirects (never followed: the 3xx is
        the answer either way), auth (none; each request carries its own header), event hooks
        (none), the cookie jar (its policy refuses every cookie, so there is nothing to store
        or send), mounts and proxies (none: `trust_env=False`), `response.elapsed`."""
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        merged = httpx.Headers(self.headers)
        merged.update(headers)
        request = httpx.Request("POST", url, content=content, headers=merged, extensions={"timeout": self._timeouts})
        try:
            return await self._upstream.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request  # as httpx's client does
            raise


def _new_client() -> _Client:
    t = settings.UPSTREAM_TIMEOUTS
    connector = aiohttp.TCPConnector(
        limit=max(1, settings.UPSTREAM_MAX_CONNECTIONS),
        limit_per_host=0,
        keepalive_timeout=30,
        ssl=httpx.create_ssl_context(),
    )
    # No cookie jar on either layer: one client serves every account of a provider, and a
    # cookie an upstream sets for one account (e.g. a bot-protection cookie on a 429) would be
    # replayed on every other account's requests to that host, linking the team's accounts.
    session = aiohttp.ClientSession(
        connector=connector, trust_env=False, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    return _Client(
        transport=_Transport(client=session),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(connect=t["connect"], read=t["read"], write=t["write"], pool=t["pool"]),
        # Clients never choose upstream URLs, and a redirect from an upstream is not followed.
        follow_redirects=False,
        trust_env=False,
    )


def http_client(kind: str) -> _Client:
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(kind)
    if client is None or client.is_closed:
        client = per_loop[kind] = _new_client()
    return client


@functools.lru_cache(maxsize=1024)
def _url(url: str) -> httpx.URL:
    # Parsed once per upstream URL (a few per account): httpx parses a str on every request,
    # ~16 µs of a request's CPU (docs/performance.md).
    return httpx.URL(url)


async def http_post(kind: str, url: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST on the `kind` pool; the response is streamed (the caller reads or closes it).
    Raises httpx errors as `client.send` does."""
    return await http_client(kind).post_streamed(_url(url), content, headers)


async def http_clients_close() -> None:
    loop = asyncio.get_running_loop()
    for client in _clients.pop(loop, {}).values():
        await client.aclose()
