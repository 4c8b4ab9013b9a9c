"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse

from infra.db import db_call
from statestore import get_store


async def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"status":"ok"}', content_type="application/json")


def _db_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker_ok() -> None:
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


async def _check(name: str, coro: object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(coro, timeout=3)  # type: ignore[arg-type]
        return name, "ok"
    except Exception as exc:  # report, don't raise: readiness is a status, not an error
        return name, f"error: {type(exc).__name__}"


async def readyz(request: HttpRequest) -> HttpResponse:
    store = get_store()
    results = dict(
        await asyncio.gather(
            _check("database", db_call(_db_ok)),
            _check("state_store", store.ping()),
            _check("broker", sync_to_async(_broker_ok, thread_sensitive=False)()),
        )
    )
    ok = all(v == "ok" for v in results.values())
    body = {"status": "ok" if ok else "unavailable", "checks": results, "state_store": store.backend}
    return HttpResponse(orjson.dumps(body), status=200 if ok else 503, content_type="application/json")
