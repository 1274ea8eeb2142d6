"""The repository's top-level ``benchmarks`` and ``loadtests`` packages are not installed: put the repository
root on the import path for the tests that use them (``python -m benchmarks.x`` has it as the working
directory)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: only `benchmarks` and `loadtests` resolve here
