"""The process-tree and Redis clean-up helpers of ``loadtests/stack.py``, for the suites that run
``flagyard up`` themselves (one copy: the load tests' stack needs them too).

``loadtests`` is a folder of the repository, not an installed package, and the repository root stays off
the test import path (there ``import sdk`` would find the bare source folder): the one file is loaded from
its path. It may import only installed packages."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_NAME = "loadtests_stack"

_spec = importlib.util.spec_from_file_location(_NAME, ROOT / "loadtests" / "stack.py")
assert _spec is not None
assert _spec.loader is not None
_stack = importlib.util.module_from_spec(_spec)
sys.modules[_NAME] = _stack  # its dataclasses look their module up in sys.modules while it executes
_spec.loader.exec_module(_stack)

alive: Callable[[int], bool] = _stack.alive
descendants: Callable[[int], set[int]] = _stack.descendants
remove_stack_keys: Callable[[Any, str, str], None] = _stack.remove_stack_keys
