"""Dashboard benchmark: seed N usage records into PostgreSQL, fold them into rollups, time pages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_dashboard \\
        .venv/bin/python bench/bench_dashboard.py --rows 1000000 [--rows 200000 ...]

Each --rows size is measured in turn (the table grows to that size). Rows are spread over
90 days, 6 accounts, 60 keys (30 owners) and 6 models, loaded with COPY. The database named
in DATABASE_URL is created if missing and its usage tables are emptied first: never point it
at a real deployment. Results: docs/admin.md, "Dashboard benchmark".
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.test")

ACCOUNTS = 6
KEYS = 60
MODELS = ("gpt-4o-mini", "gpt-4.1", "gpt-5", "claude-sonnet-4", "o4-mini", "gpt-4o")
DAYS = 90


def _ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[-1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def _seed(count: int, start_id: int) -> None:
    from django.db import connection

    now = datetime.now(UTC)
    rng = random.Random(start_id)
    columns = (
        "request_id, created_at, client_key_id, key_prefix, account_id, account_label, surface, requested_model, "
        "served_model, stream, outcome, status_code, input_tokens, output_tokens, cached_tokens, "
        "cache_creation_tokens, reasoning_tokens, usage_estimated, ttfb_ms, duration_ms, attempts, "
        "upstream_request_id, error_code, error_message, attempt_log"
    )
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor: COPY FROM STDIN
        with raw.copy(f"COPY audit_usagerecord ({columns}) FROM STDIN") as copy:
            for _ in range(count):
                key = rng.randrange(1, KEYS + 1)
                acct = rng.randrange(1, ACCOUNTS + 1)
                model = MODELS[rng.randrange(len(MODELS))]
                roll = rng.random()
                outcome, status = (
                    ("ok", 200) if roll < 0.95 else ("upstream_error", 502) if roll < 0.98 else ("rejected", 429)
                )
                ttfb = int(rng.lognormvariate(6.0, 0.8))
                copy.write_row(
                    (
                        uuid.uuid4(),
                        now - timedelta(seconds=rng.randrange(DAYS * 86400)),
                        key,
                        f"sk-team-k{key:03d}",
                        acct,
                        f"acct-{acct}",
                        "chat",
                        model,
                        model,
                        True,
                        outcome,
                        status,
                        rng.randrange(50, 4000),
                        rng.randrange(1, 1500),
                        0,
                        0,
                        0,
                        False,
                        ttfb,
                        ttfb + rng.randrange(100, 20000),
                        1 if rng.random() < 0.97 else 2,
                        "",
                        "" if outcome == "ok" else "upstream_error",
                        "",
                        "[]",
                    )
                )


def _reset() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from accounts.models import ClientKey, UpstreamAccount
    from accounts.services import account_add_openai_compat, client_key_create

    with connection.cursor() as c:
        c.execute("TRUNCATE audit_usagerecord, audit_usagerollup, audit_rollupwatermark RESTART IDENTITY")
    ClientKey.objects.all().delete()
    UpstreamAccount.objects.all().delete()
    for i in range(1, ACCOUNTS + 1):
        account_add_openai_compat(label=f"acct-{i}", base_url="http://127.0.0.1:9/v1", api_key="k", model_names=MODELS)
    for i in range(1, KEYS + 1):
        client_key_create(name=f"key-{i}", owner_label=f"dev{i % 30}@example.com")
    users = get_user_model()
    if not users.objects.filter(username="bench").exists():
        users.objects.create_superuser("bench", "bench@example.com", "bench-password-1")


def _time_pages() -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    today = datetime.now(UTC).date()
    pages = {
        "dashboard 1 day (hourly)": f"/admin/audit/usagerecord/dashboard/?start={today}&end={today}",
        "dashboard 7 days (daily)": "/admin/audit/usagerecord/dashboard/",
        "dashboard 30 days": f"/admin/audit/usagerecord/dashboard/?start={today - timedelta(days=29)}&end={today}",
        "dashboard 90 days": f"/admin/audit/usagerecord/dashboard/?start={today - timedelta(days=89)}&end={today}",
        "accounts board": "/admin/accounts/upstreamaccount/",
        "usage records list": "/admin/audit/usagerecord/",
    }
    out = {}
    for name, url in pages.items():
        samples = []
        for _ in range(5):
            t = time.perf_counter()
            resp = client.get(url)
            assert resp.status_code == 200, (url, resp.status_code)
            samples.append((time.perf_counter() - t) * 1000)
        out[name] = statistics.median(samples[1:])  # first request warms caches
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append", help="total raw rows to measure at (repeatable)")
    args = parser.parse_args()
    sizes = sorted(args.rows or [1_000_000])
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a scratch PostgreSQL database (e.g. .../bench_dashboard)")
    _ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    from audit.rollups import rollups_update

    call_command("migrate", verbosity=0)
    _reset()
    have = 0
    for size in sizes:
        t = time.perf_counter()
        _seed(size - have, have)
        seeded = time.perf_counter() - t
        t = time.perf_counter()
        folded = rollups_update()
        rolled = time.perf_counter() - t
        have = size
        from django.db import connection

        with connection.cursor() as c:
            c.execute("ANALYZE audit_usagerecord; ANALYZE audit_usagerollup")
            c.execute("select count(*) from audit_usagerollup")
            cells = c.fetchone()[0]
        print(f"\n## {size:,} raw rows ({cells:,} rollup rows)")
        print(
            f"seed (COPY) {size - (have - size):,} rows: {seeded:.1f} s; rollup of {folded:,} new rows: {rolled:.1f} s"
        )
        for name, ms in _time_pages().items():
            flag = "" if ms < 300 else "  <-- over 300 ms"
            print(f"  {name:28s} {ms:7.1f} ms{flag}")


if __name__ == "__main__":
    main()
