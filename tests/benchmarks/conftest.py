"""The benchmarks live in the repository's top-level ``benchmarks`` package, which is not installed: put the
repository root on the import path for these tests (``python -m benchmarks.x`` has it as the working
directory)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: only `benchmarks` resolves here
