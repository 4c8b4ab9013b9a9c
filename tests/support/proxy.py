"""Test helpers around a running proxy: seed an account and a key, read usage records."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from accounts.models import UpstreamAccount
from accounts.services import client_key_create
from audit.models import UsageRecord
from audit.services import usage_flush
from executors.openai_compat.services import account_add_openai_compat
from infra.db import db_call


@dataclass
class ProxySetup:
    url: str
    key: str
    fake: Any
    accounts: list[UpstreamAccount]

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def headers(self, **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}", **extra}


def seed(
    proxy_url: str,
    fake: Any,
    *,
    accounts: int = 1,
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4.1"),
    allowed_models: tuple[str, ...] = (),
) -> ProxySetup:
    created = [
        account_add_openai_compat(
            label=f"acct-{chr(65 + i)}",
            base_url=fake.url + "/v1",
            api_key=f"sk-upstream-{chr(65 + i)}",
            model_names=models,
            priority=10 - i,
        )
        for i in range(accounts)
    ]
    _, raw = client_key_create(name="dev", owner_label="dev@example.com", allowed_models=allowed_models)
    return ProxySetup(url=proxy_url, key=raw, fake=fake, accounts=created)


async def usage_rows(expected: int, *, timeout: float = 5.0) -> list[UsageRecord]:
    """Flush the buffer until `expected` rows exist (records land just after the response)."""
    deadline = time.monotonic() + timeout
    rows: list[UsageRecord] = []
    while True:
        await usage_flush()
        rows = await db_call(lambda: list(UsageRecord.objects.order_by("created_at", "id")))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


def completion_body(
    *, content: str = "ok", usage: Any = None, completion_id: str = "chatcmpl-1", model: str = "gpt-4o-mini"
) -> dict[str, Any]:
    """A Chat Completions answer as an upstream sends it, for `Fault.http(200, ...)` injection."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage if usage is not None else {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
