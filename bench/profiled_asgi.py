"""The proxy's ASGI app with an in-process sampling profiler (py-spy cannot attach here).

``uvicorn bench.profiled_asgi:application`` serves exactly ``proxy_project.asgi.application``.
While the file ``$BENCH_PROFILE_DIR/on`` exists, a CPU-time timer (``ITIMER_PROF``, every
``BENCH_PROFILE_INTERVAL_MS`` ms of process CPU, default 1) interrupts the event-loop thread
and records its Python stack, so samples land where CPU is spent, never in idle waits; other
threads busy at that moment (sync_to_async pool) are recorded with a ``[thread]`` root. When
the file disappears, collapsed stacks (flamegraph format) go to
``$BENCH_PROFILE_DIR/<label>.<pid>.txt``, label = the ``on`` file's content.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

from proxy_project.asgi import application

__all__ = ["application"]

_IDLE_LEAVES = {
    ("runners.py", "run"),
    ("base_events.py", "run_forever"),
    ("base_events.py", "run_until_complete"),
    ("thread.py", "_worker"),
    ("threading.py", "wait"),
    ("queue.py", "get"),
    ("server.py", "serve"),
}


def _stack(frame: FrameType | None) -> list[str]:
    out: list[str] = []
    while frame is not None:
        code = frame.f_code
        path = code.co_filename
        short = (
            path.split("site-packages/")[-1] if "site-packages/" in path else path.replace(str(Path.cwd()) + "/", "")
        )
        out.append(f"{code.co_name} ({short}:{frame.f_lineno})")
        frame = frame.f_back
    out.reverse()
    return out


_stacks: Counter[str] = Counter()
_idle = [0]
_controller_id = [0]


def _on_prof(signum: int, frame: FrameType | None) -> None:
    _stacks[";".join(_stack(frame))] += 1
    main = threading.main_thread().ident
    for tid, other in sys._current_frames().items():
        if tid in (main, _controller_id[0]):
            continue
        code = other.f_code
        if (os.path.basename(code.co_filename), code.co_name) in _IDLE_LEAVES:
            _idle[0] += 1
        else:
            _stacks["[thread];" + ";".join(_stack(other))] += 1


def _controller(folder: Path, interval: float) -> None:
    flag = folder / "on"
    _controller_id[0] = threading.get_ident()
    while True:
        time.sleep(0.05)
        if not flag.exists():
            continue
        label = flag.read_text().strip() or "profile"
        _stacks.clear()
        _idle[0] = 0
        signal.setitimer(signal.ITIMER_PROF, interval, interval)
        while flag.exists():
            time.sleep(0.05)
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        time.sleep(0.05)
        lines = [f"# idle_samples {_idle[0]}"] + [f"{k} {v}" for k, v in _stacks.most_common()]
        (folder / f"{label}.{os.getpid()}.txt").write_text("\n".join(lines) + "\n")


_dir = os.environ.get("BENCH_PROFILE_DIR")
if _dir:
    signal.signal(signal.SIGPROF, _on_prof)
    threading.Thread(
        target=_controller,
        args=(Path(_dir), float(os.environ.get("BENCH_PROFILE_INTERVAL_MS", "1")) / 1000),
        daemon=True,
        name="bench-profiler",
    ).start()
