"""Runs ``flagyard`` as the base install has it (``pip install flagyard``): the ``[cli]`` and ``[server]``
libraries made unimportable through ``sys.modules[name] = None``, so ``import typer`` raises ImportError."""

from __future__ import annotations

import sys

MISSING = ("typer", "rich", "httpx", "click", "yaml", "fastapi", "uvicorn", "sqlalchemy", "redis", "rq")
WRAPPER = (
    "import sys\n"
    f"for name in {MISSING!r}:\n"
    "    sys.modules[name] = None\n"
    "from flagyard.cli import main\n"
    "main()\n"
)
BASE_FLAGYARD = [sys.executable, "-c", WRAPPER]
