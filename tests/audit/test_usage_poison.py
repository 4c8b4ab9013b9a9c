"""Issue 17 F1: one bad record must never stop usage recording.

The reproductions run through the live proxy (PostgreSQL in CI, where NUL and integer range are
enforced): a model name with a NUL byte, an upstream that reports 3,000,000,000 or negative
tokens. Then the second line of defence: a row the database still refuses is set aside in the
dead-letter table and the rows behind it are written.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper

from audit.cleaning import usage_row_clean
from audit.models import UsageDeadLetter, UsageRecord
from audit.services import USAGE_BUFFER_KEY, UsageDraft, usage_flush, usage_record
from infra.db import db_call
from tests.fakes.base import Fault
from tests.support.proxy import ProxySetup, completion_body, seed, usage_rows

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def proxy(live_proxy: Any, fake_openai: Any) -> ProxySetup:
    return seed(live_proxy.url, fake_openai)


@pytest.mark.live
async def test_nul_byte_in_model_does_not_block_later_records(proxy: ProxySetup) -> None:
    async with httpx.AsyncClient(timeout=15) as client:
        bad = await client.post(
            proxy.v1 + "/chat/completions", json={**CHAT, "model": "gpt\u0000-4o-mini"}, headers=proxy.headers()
        )
        assert bad.status_code == 404
        first = await usage_rows(1)
        good = await client.post(proxy.v1 + "/chat/completions", json=CHAT, headers=proxy.headers())
        assert good.status_code == 200
    rows = await usage_rows(2)
    assert len(first) == 1 and len(rows) == 2
    assert rows[0].requested_model == "gpt-4o-mini" and rows[0].status_code == 404
    assert rows[1].outcome == "ok"
    assert await db_call(UsageDeadLetter.objects.count) == 0


@pytest.mark.live
@pytest.mark.parametrize(
    ("usage", "expected", "estimated"),
    [
        # past the column: clamped where the record is built, and no longer exact
        ({"prompt_tokens": 3_000_000_000, "completion_tokens": 7, "total_tokens": 3_000_000_007}, (2**31 - 1, 7), True),
        # negative counts are junk, read as 0 like a missing count (formats/_core.py::as_int)
        ({"prompt_tokens": -5, "completion_tokens": -3_000_000_000, "total_tokens": 0}, (0, 0), False),
    ],
    ids=["huge", "negative"],
)
async def test_hostile_upstream_token_counts_are_clamped(
    proxy: ProxySetup, usage: dict[str, Any], expected: tuple[int, int], estimated: bool
) -> None:
    proxy.fake.faults.push(Fault.http(200, completion_body(usage=usage)))
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(proxy.v1 + "/chat/completions", json=CHAT, headers=proxy.headers())
        assert r.status_code == 200
        after = await client.post(proxy.v1 + "/chat/completions", json=CHAT, headers=proxy.headers())
        assert after.status_code == 200
    rows = await usage_rows(2)
    assert len(rows) == 2
    assert (rows[0].input_tokens, rows[0].output_tokens) == expected
    assert rows[0].usage_estimated is estimated
    assert rows[1].input_tokens > 0 and rows[1].usage_estimated is False


async def test_negative_counts_never_refund_a_key_budget(store: Any) -> None:
    from routing.proxy import _Finisher

    fin = _Finisher(UsageDraft(surface="chat", input_tokens=-(10**12), output_tokens=-5))
    await fin.finish()
    assert (fin.draft.input_tokens, fin.draft.output_tokens) == (0, 0)


def test_row_clean_covers_every_column_kind() -> None:
    row = usage_row_clean(
        {
            "requested_model": "a\x00b" + "x" * 500,
            "error_message": "lone \ud800 surrogate",
            "input_tokens": 10**30,
            "status_code": 70_000,
            "ttfb_ms": None,
            "attempts": "3",
            "attempt_log": [{"account": "a\x00", "code": "\udfff"}],
        }
    )
    assert row["requested_model"] == "ab" + "x" * 198
    assert "\ud800" not in row["error_message"]
    assert row["input_tokens"] == 2**31 - 1 and row["usage_estimated"] is True
    assert row["status_code"] == 32767 and row["ttfb_ms"] is None and row["attempts"] == 3
    assert orjson.dumps(row["attempt_log"]) == b'[{"account":"a","code":"?"}]'


async def test_rows_the_database_refuses_go_to_the_dead_letter_table(store: Any, monkeypatch: Any) -> None:
    from django.db import connection

    # Defence in depth: switch the cleaning off so rows reach the database as they came.
    monkeypatch.setattr("audit.services.usage_row_clean", lambda data: data)
    monkeypatch.setattr("audit.services.usage_draft_clean", lambda draft: None)
    poison = [{"input_tokens": "many"}]  # refused by Django itself, on every backend
    if connection.vendor == "postgresql":  # refused by PostgreSQL (SQLite stores them)
        poison += [{"requested_model": "gpt\x00-4o-mini"}, {"input_tokens": 3_000_000_000}, {"output_tokens": -1}]
    before = _dead_letter_metric()
    await usage_record(UsageDraft(surface="chat", requested_model="good-1"), store=store)
    for fields in poison:
        await usage_record(UsageDraft(surface="chat", **fields), store=store)
    await store.list_push(USAGE_BUFFER_KEY, b"not json at all")
    await usage_record(UsageDraft(surface="chat", requested_model="good-2"), store=store)

    assert await usage_flush(store=store) == 2
    assert await store.list_len(USAGE_BUFFER_KEY) == 0  # the queue moved on
    models = await db_call(lambda: sorted(UsageRecord.objects.values_list("requested_model", flat=True)))
    assert models == ["good-1", "good-2"]
    dead = await db_call(lambda: list(UsageDeadLetter.objects.order_by("id")))
    assert len(dead) == len(poison) + 1
    assert sum(d.error.startswith("ValueError: unreadable buffer entry") for d in dead) == 1
    assert all("\x00" not in d.payload for d in dead)
    assert _dead_letter_metric() - before == len(poison) + 1


def _dead_letter_metric() -> float:
    from observability.metrics import USAGE_DEAD_LETTERS

    return float(USAGE_DEAD_LETTERS._value.get())


async def test_database_outage_is_logged_once_not_every_flush(
    store: Any, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from audit.flusher import usage_flush_logged

    await usage_record(UsageDraft(surface="chat"), store=store)

    def down(self: Any) -> None:
        raise OperationalError("simulated outage")

    with caplog.at_level(logging.INFO):
        monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", down)
        for _ in range(5):
            assert await usage_flush_logged(store=store) == 0
        monkeypatch.undo()
        assert await usage_flush_logged(store=store) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "audit.flusher"]
    assert len(messages) == 2, messages
    assert "unavailable" in messages[0] and "back after 5" in messages[1]
    assert not any(r.exc_info for r in caplog.records)


def test_dead_letters_are_read_only_in_the_admin(admin_client: Any) -> None:
    UsageDeadLetter.objects.create(request_id="r-1", error="DataError: x", payload="{}")
    listing = admin_client.get("/admin/audit/usagedeadletter/")
    assert listing.status_code == 200 and b"r-1" in listing.content
    assert admin_client.get("/admin/audit/usagedeadletter/add/").status_code == 403
    pk = UsageDeadLetter.objects.get().pk
    assert admin_client.post(f"/admin/audit/usagedeadletter/{pk}/delete/", {"post": "yes"}).status_code == 403
    assert UsageDeadLetter.objects.count() == 1
