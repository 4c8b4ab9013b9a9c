"""Short soak (≈30 s): bench/soak.py in its own process against the fast fake upstream.

The long run is a documented command (docs/reliability.md):
    .venv/bin/python -m bench.soak --streams 200 --minutes 30
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.soak, pytest.mark.timeout(90)]


def test_short_soak_no_errors_rows_match_rss_bounded(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--streams", "20", "--seconds", "30", "--warmup", "12",
         "--max-slope", "1000", "--json", str(out)],
        cwd=ROOT, capture_output=True, timeout=85,
    )  # fmt: skip
    assert out.exists(), proc.stderr.decode()[-3000:]
    result = json.loads(out.read_text())
    print(json.dumps(result, indent=2))
    assert result["errors"] == 0, result["error_samples"]
    assert result["requests"] > 500
    assert result["usage_rows"] == result["requests"]
    for worker in result["rss"].values():
        # 30 s is too short for a meaningful slope (allocator warm-up dominates): bound the
        # growth after warm-up instead; the long run checks the slope (--max-slope).
        assert worker["end_mib"] - worker["after_warmup_mib"] < 20, worker
