"""Per-request cost of account choice: catalog resolve + affinity read + selection order +
cooldown check (one MGET) + the success bookkeeping, against a real Redis.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/bench_selection.py [--n 20000]

Prints p50/p99/max in microseconds. Uses a throwaway SQLite database under var/bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_project.settings.base")
os.environ.setdefault("PROXY_VAR_DIR", str(ROOT / "var" / "bench"))
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench' / 'selection.sqlite3'}")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("STATE_KEY_PREFIX", f"llmproxy-bench-{os.getpid()}:")
os.environ.setdefault("PROXY_ALLOW_PRIVATE_UPSTREAMS", "true")  # the accounts point at 127.0.0.1

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from accounts.models import UpstreamAccount  # noqa: E402
from executors.openai_compat.services import account_add_openai_compat  # noqa: E402
from routing.affinity import affinity_key, affinity_parse  # noqa: E402
from routing.catalog import catalog_resolve  # noqa: E402
from routing.dispatch import Affinity, _reward  # noqa: E402
from routing.selection import selection_order  # noqa: E402
from state.cooldown import cooldown_check, cooldown_start, family_scope  # noqa: E402
from statestore import get_store  # noqa: E402


def setup_accounts(n: int) -> None:
    call_command("migrate", verbosity=0)
    UpstreamAccount.objects.all().delete()
    for i in range(n):
        account_add_openai_compat(
            label=f"bench-{i}",
            base_url="http://127.0.0.1:9/v1",
            api_key="k",
            model_names=["gpt-4o-mini"],
            priority=i % 2,
        )


async def run(n: int) -> list[float]:
    store = get_store()
    await catalog_resolve("gpt-4o-mini")  # warm the caches, as in steady state
    first = (await catalog_resolve("gpt-4o-mini")).targets[0]
    await cooldown_start(store, account_id=first.account.id, scope=family_scope("gpt-4o-mini"), seconds=600, reason="")
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        resolution = await catalog_resolve("gpt-4o-mini")
        session = f"h:{i % 50}"
        checked, extras = await cooldown_check(
            store,
            [(t.account.id, t.family, t.upstream_model) for t in resolution.targets],
            also=(affinity_key(1, resolution.name, session),),
        )
        preferred = affinity_parse(extras[0])
        ordered = await selection_order(store, resolution, preferred_account=preferred)
        usable = {t.account.id for t, s in zip(resolution.targets, checked, strict=True) if s.wait is None}
        chosen = next(t for t in ordered if t.account.id in usable)
        await _reward(store, resolution, chosen, False, Affinity(key_id=1, session=session), preferred)
        samples.append((time.perf_counter() - t0) * 1e6)
    if hasattr(store, "flush_prefix"):
        await store.flush_prefix()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--accounts", type=int, default=6)
    args = parser.parse_args()
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    setup_accounts(args.accounts)
    samples = asyncio.run(run(args.n))
    samples.sort()
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    print(f"selection+state per request ({args.accounts} accounts, {os.environ['REDIS_URL'] or 'in-process'}):")
    print(
        f"  n={len(samples)} p50={p(0.5):.0f}us p99={p(0.99):.0f}us max={samples[-1]:.0f}us "
        f"mean={statistics.fmean(samples):.0f}us"
    )


if __name__ == "__main__":
    main()
