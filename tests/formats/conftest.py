"""Fixtures for the formats tests; shared helpers live in fmt_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

# Make fmt_helpers importable whatever pytest's rootdir/import mode is.
sys.path.insert(0, str(Path(__file__).parent))
