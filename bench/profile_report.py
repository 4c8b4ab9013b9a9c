"""Summarise collapsed stacks from bench.profiled_asgi: cost by component and top self lines.

``python -m bench.profile_report bench/results/profile/W1-c50.*.txt``
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (label, substring of a frame) — a sample counts for a component if any frame matches.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("uvicorn/httptools protocol", ("uvicorn/",)),
    ("sync_to_async worker threads", ("[thread]",)),
    ("django ASGI handler (request/response objects)", ("django/core/handlers/",)),
    ("django middleware chain", ("django/middleware/", "middleware.py", "django/utils/deprecation.py")),
    ("asgiref sync_to_async/async_to_sync hops", ("asgiref/sync.py",)),
    ("django signals (request_started/finished)", ("django/dispatch/",)),
    ("django URL resolving", ("django/urls/",)),
    ("django-ninja", ("ninja/",)),
    ("django DB (connections, queries)", ("django/db/", "psycopg/")),
    ("proxy code: routing/", ("routing/",)),
    ("proxy code: executors/", ("executors/",)),
    ("proxy code: accounts/ (key/account caches)", ("accounts/",)),
    ("proxy code: audit/ (usage buffer)", ("audit/",)),
    ("proxy code: statestore/ (Redis)", ("statestore/",)),
    ("proxy code: formats/", ("formats/",)),
    ("redis-py client", ("redis/",)),
    ("httpx", ("httpx/",)),
    ("httpcore", ("httpcore/",)),
    ("logging", ("logging/",)),
    ("uuid/dataclasses.asdict", ("uuid.py", "dataclasses.py")),
]


def load(paths: list[Path]) -> tuple[Counter[str], int]:
    stacks: Counter[str] = Counter()
    idle = 0
    for p in paths:
        for line in p.read_text().splitlines():
            if line.startswith("# idle_samples"):
                idle += int(line.split()[-1])
            elif line.strip():
                stack, _, n = line.rpartition(" ")
                stacks[stack] += int(n)
    return stacks, idle


def summarize(paths: list[Path], top: int = 15) -> str:
    stacks, idle = load(paths)
    total = sum(stacks.values())
    if not total:
        return "no samples\n"
    out = [
        f"busy samples {total}, idle samples {idle} (busy share {total / (total + idle):.0%})",
        "",
        "| component (inclusive) | share of busy samples |",
        "|---|---|",
    ]
    rows = []
    for label, needles in COMPONENTS:
        n = sum(c for s, c in stacks.items() if any(x in s for x in needles))
        rows.append((n, label))
    work = ("routing/", "executors/", "accounts/", "audit/", "statestore/", "formats/", "httpx/", "httpcore/", "redis/")
    frame_only = sum(c for s, c in stacks.items() if not s.startswith("[thread]") and not any(w in s for w in work))
    rows.append((frame_only, "**server+framework only** (no proxy-code or client-library frame)"))
    for n, label in sorted(rows, reverse=True):
        if n:
            out.append(f"| {label} | {n / total:.1%} |")
    selfs: Counter[str] = Counter()
    for s, c in stacks.items():
        selfs[s.rsplit(";", 1)[-1]] += c
    out += ["", "| top self frames (leaf, file:line) | share |", "|---|---|"]
    out += [f"| `{f}` | {c / total:.1%} |" for f, c in selfs.most_common(top)]
    threads: Counter[str] = Counter()
    for s, c in stacks.items():
        if s.startswith("[thread]"):
            frames = s.split(";")
            threads[" <- ".join(reversed(frames[-3:]))] += c
    if threads:
        out += ["", "| busy worker-thread stacks (leaf <- caller <- caller) | share |", "|---|---|"]
        out += [f"| `{f}` | {c / total:.1%} |" for f, c in threads.most_common(8)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(summarize([Path(a) for a in sys.argv[1:]]))
