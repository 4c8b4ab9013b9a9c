"""Dashboard benchmark: seed N usage records into PostgreSQL, fold them into rollups, time pages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_dashboard \\
        .venv/bin/python bench/bench_dashboard.py --dist realistic --dist random --rows 1000000 [--rows ...]

For each --dist, the usage tables are emptied and each --rows size is measured in turn (the
table grows to that size). Rows span 90 days and are loaded with COPY (text format, generated
in chunks). Distributions:

- realistic: 10 accounts, 20 keys (12 developers), 15 models; each key uses 1-3 models, each
  model is served by 1-2 accounts, traffic follows working hours and weekdays;
- random: 6 accounts, 60 keys (30 developers), 6 models drawn independently and uniformly,
  so nearly every raw row opens its own hourly cell: the worst case for the rollups.

Prints seed and rollup throughput (rows/s), the rollup row count per cube, and each page's
p50 of 5 warm requests through Django's test client (target < 300 ms), for a superuser and
for a staff member who only sees their own keys. --explain prints EXPLAIN ANALYZE of every
query of the 90-day dashboard. The database named in DATABASE_URL is created if missing and
DROPPED at the end (--keep to keep it): never point it at a real deployment.
Results: docs/admin.md, "Dashboard benchmark".
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.test")

DAYS = 90
CHUNK = 20_000
# One request's (key id, key prefix), (account id, label), model and seconds before now.
Draw = Callable[[], tuple[tuple[int, str], tuple[int, str], str, float]]


@dataclass(frozen=True)
class Dist:
    accounts: int
    keys: int
    developers: int
    models: tuple[str, ...]


DISTS = {
    "realistic": Dist(
        accounts=10,
        keys=20,
        developers=12,
        models=(
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-5",
            "gpt-5-mini",
            "o4-mini",
            "o3",
            "gpt-4o",
            "claude-sonnet-4",
            "claude-opus-4",
            "claude-haiku-3.5",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "llama-3.3-70b",
            "qwen3-coder",
        ),
    ),
    "random": Dist(
        accounts=6,
        keys=60,
        developers=30,
        models=("gpt-4o-mini", "gpt-4.1", "gpt-5", "claude-sonnet-4", "o4-mini", "gpt-4o"),
    ),
}

COLUMNS = (
    "request_id, created_at, client_key_id, key_prefix, account_id, account_label, surface, requested_model, "
    "served_model, stream, outcome, status_code, input_tokens, output_tokens, cached_tokens, "
    "cache_creation_tokens, reasoning_tokens, usage_estimated, ttfb_ms, duration_ms, attempts, "
    "upstream_request_id, error_code, error_message, attempt_log"
)


def _ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[-1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
            conn.execute(f'create database "{name}"')


def _drop_database(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    name = url.rsplit("/", 1)[-1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
    print(f"\ndropped database {name}")


def _row_sampler(
    dist_name: str, rng: random.Random, accounts: list[tuple[int, str]], keys: list[tuple[int, str]]
) -> Draw:
    """A function drawing (key, account, model, seconds-ago) for one request."""
    dist = DISTS[dist_name]
    span = DAYS * 86400
    if dist_name == "random":

        def draw_random() -> tuple[tuple[int, str], tuple[int, str], str, float]:
            return (
                keys[rng.randrange(len(keys))],
                accounts[rng.randrange(len(accounts))],
                dist.models[rng.randrange(len(dist.models))],
                rng.random() * span,
            )

        return draw_random

    # Realistic: fixed per-key habits (seeded), busy keys and quiet ones, working hours.
    habits = random.Random(42)
    key_models = [habits.sample(dist.models, habits.randint(1, 3)) for _ in keys]
    serving = {m: habits.sample(accounts, habits.randint(1, 2)) for m in dist.models}
    key_weights = [habits.paretovariate(1.2) for _ in keys]
    now = datetime.now(UTC)

    def busy(seconds_ago: float) -> bool:
        t = now - timedelta(seconds=seconds_ago)
        weight = (1.0 if 8 <= t.hour < 19 else 0.15) * (1.0 if t.weekday() < 5 else 0.2)
        return rng.random() < weight

    def draw_realistic() -> tuple[tuple[int, str], tuple[int, str], str, float]:
        k = rng.choices(range(len(keys)), key_weights)[0]
        model = rng.choice(key_models[k])
        while True:
            ago = rng.random() * span
            if busy(ago):
                break
        return keys[k], rng.choice(serving[model]), model, ago

    return draw_realistic


def _lines(count: int, sample: Draw, rng: random.Random) -> Iterator[str]:
    now = datetime.now(UTC).timestamp()
    fromts = datetime.fromtimestamp
    buf: list[str] = []
    for _ in range(count):
        (kid, kprefix), (aid, alabel), model, ago = sample()
        roll = rng.random()
        outcome, status = ("ok", 200) if roll < 0.95 else ("upstream_error", 502) if roll < 0.98 else ("rejected", 429)
        ttfb = int(rng.lognormvariate(6.0, 0.8))
        created = fromts(now - ago, UTC).isoformat(sep=" ")
        buf.append(
            f"{rng.getrandbits(128):032x}\t{created}\t{kid}\t{kprefix}\t{aid}\t{alabel}\tchat\t{model}\t{model}\tt\t"
            f"{outcome}\t{status}\t{rng.randrange(50, 4000)}\t{rng.randrange(1, 1500)}\t0\t0\t0\tf\t{ttfb}\t"
            f"{ttfb + rng.randrange(100, 20000)}\t{1 if rng.random() < 0.97 else 2}\t\t"
            f"{'' if outcome == 'ok' else 'upstream_error'}\t\t[]\n"
        )
        if len(buf) >= CHUNK:
            yield "".join(buf)
            buf = []
    if buf:
        yield "".join(buf)


def _seed(count: int, sample: Draw, seed: int) -> None:
    from django.db import connection, transaction

    rng = random.Random(seed)
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor: COPY FROM STDIN
        with raw.copy(f"COPY audit_usagerecord ({COLUMNS}) FROM STDIN") as copy:
            for block in _lines(count, sample, rng):
                copy.write(block)


def _reset(dist: Dist) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from accounts.models import ClientKey, UpstreamAccount
    from accounts.services import client_key_create
    from executors.openai_compat.services import account_add_openai_compat

    with connection.cursor() as c:
        c.execute("TRUNCATE audit_usagerecord, audit_usagerollup, audit_rollupwatermark RESTART IDENTITY")
    ClientKey.objects.all().delete()
    UpstreamAccount.objects.all().delete()
    users = get_user_model()
    users.objects.filter(username__in=["bench", "bench-dev"]).delete()
    users.objects.create_superuser("bench", "bench@example.com", "bench-password-1")
    dev = users.objects.create_user("bench-dev", password="bench-password-2", is_staff=True)
    from django.contrib.auth.models import Permission

    dev.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="audit", codename__in=["view_usagerecord", "view_usagerollup"]
        )
    )
    accounts = []
    for i in range(1, dist.accounts + 1):
        acct = account_add_openai_compat(
            label=f"acct-{i}", base_url="http://127.0.0.1:9/v1", api_key="k", model_names=list(dist.models)
        )
        accounts.append((acct.pk, acct.label))
    keys = []
    for i in range(1, dist.keys + 1):
        # The scoped staff member owns the first two keys (one busy developer's laptop and CI).
        owner = {"owner_id": dev.pk} if i <= 2 else {"owner_label": f"dev{i % dist.developers}@example.com"}
        key, _ = client_key_create(name=f"key-{i}", **owner)  # type: ignore[arg-type]
        keys.append((key.pk, key.prefix))
    return accounts, keys


def _pages(account_id: int) -> dict[str, tuple[str, str]]:
    today = datetime.now(UTC).date()
    dash = "/admin/audit/usagerecord/dashboard/"

    def rng(days: int) -> str:
        return f"{dash}?start={today - timedelta(days=days - 1)}&end={today}"

    # The same aware-datetime parameters the "Past 7 days" link of the date filter uses.
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week_ago, tomorrow = midnight - timedelta(days=7), midnight + timedelta(days=1)
    return {
        "dashboard 1 day (hourly)": ("bench", rng(1)),
        "dashboard 7 days (daily)": ("bench", dash),
        "dashboard 30 days": ("bench", rng(30)),
        "dashboard 90 days": ("bench", rng(90)),
        "dashboard 1 day, own keys": ("bench-dev", rng(1)),
        "dashboard 90 days, own keys": ("bench-dev", rng(90)),
        "accounts board": ("bench", "/admin/accounts/upstreamaccount/"),
        "records list": ("bench", "/admin/audit/usagerecord/"),
        "records list, page 50": ("bench", "/admin/audit/usagerecord/?p=50"),
        "records, outcome=error": ("bench", "/admin/audit/usagerecord/?outcome=upstream_error"),
        "records, one account": ("bench", f"/admin/audit/usagerecord/?account={account_id}"),
        "records, past 7 days": (
            "bench",
            "/admin/audit/usagerecord/?"
            + urlencode({"created_at__gte": str(week_ago), "created_at__lt": str(tomorrow)}),
        ),
        "records list, own keys": ("bench-dev", "/admin/audit/usagerecord/"),
        "rollups list": ("bench", "/admin/audit/usagerollup/"),
    }


def _time_pages(account_id: int, runs: int = 5) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    clients = {}
    for username in ("bench", "bench-dev"):
        clients[username] = Client()
        clients[username].force_login(get_user_model().objects.get(username=username))
    out = {}
    for name, (user, url) in _pages(account_id).items():
        samples = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            resp = clients[user].get(url)
            assert resp.status_code == 200, (url, resp.status_code)
            samples.append((time.perf_counter() - t) * 1000)
        out[name] = statistics.median(samples[1:])  # first request warms caches
    return out


def _explain(url: str) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    for q in ctx.captured_queries:
        sql = q["sql"]
        if "audit_usage" not in sql:
            continue
        with connection.cursor() as c:
            c.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n    ".join(r[0] for r in c.fetchall())
        print(f"\n  {sql[:160]}...\n    {plan}")


def _cube_counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as c:
        c.execute("select granularity, count(*) from audit_usagerollup group by 1 order by 1")
        return dict(c.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append", help="total raw rows to measure at (repeatable)")
    parser.add_argument("--dist", action="append", choices=sorted(DISTS), help="distribution(s) to run, in order")
    parser.add_argument("--batch", type=int, default=50_000, help="rollup id-range size")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the 90-day dashboard queries")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database at the end")
    args = parser.parse_args()
    sizes = sorted(args.rows or [1_000_000])
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a scratch PostgreSQL database (e.g. .../bench_dashboard)")
    _ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from audit.rollups import rollups_update

    call_command("migrate", verbosity=0)
    try:
        for dist_name in args.dist or ["realistic"]:
            accounts, keys = _reset(DISTS[dist_name])
            sample = _row_sampler(dist_name, random.Random(7), accounts, keys)
            have = 0
            for size in sizes:
                new = size - have
                t = time.perf_counter()
                _seed(new, sample, seed=size)
                seeded = time.perf_counter() - t
                with connection.cursor() as c:
                    c.execute("VACUUM ANALYZE audit_usagerecord")
                t = time.perf_counter()
                folded = rollups_update(batch=args.batch)
                rolled = time.perf_counter() - t
                with connection.cursor() as c:
                    c.execute("VACUUM ANALYZE audit_usagerollup")
                have = size
                cubes = _cube_counts()
                print(f"\n## {dist_name}: {size:,} raw rows -> {sum(cubes.values()):,} rollup rows {cubes}")
                print(f"seed (COPY) {new:,} rows: {seeded:.1f} s ({new / seeded:,.0f} rows/s)")
                print(f"rollup of {folded:,} new rows: {rolled:.1f} s ({folded / rolled:,.0f} rows/s)")
                # Steady state: what one beat folds after a minute of traffic (10k requests).
                _seed(10_000, sample, seed=size + 1)
                t = time.perf_counter()
                small = rollups_update(batch=args.batch)
                print(f"incremental rollup of {small:,} rows: {(time.perf_counter() - t) * 1000:.0f} ms")
                have += 10_000
                for name, ms in _time_pages(accounts[0][0]).items():
                    flag = "" if ms < 300 else "  <-- over 300 ms"
                    print(f"  {name:30s} {ms:7.1f} ms{flag}", flush=True)
                if args.explain:
                    today = datetime.now(UTC).date()
                    _explain(f"/admin/audit/usagerecord/dashboard/?start={today - timedelta(days=89)}&end={today}")
                    _explain("/admin/audit/usagerecord/")
    finally:
        if not args.keep:
            _drop_database(url)


if __name__ == "__main__":
    main()
