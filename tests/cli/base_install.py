"""Runs ``flagyard`` as a smaller install has it: the base install (``pip install flagyard``: no ``[cli]``,
no ``[server]`` libraries) or ``flagyard[cli]`` (no ``[server]`` libraries). The missing libraries are made
unimportable through ``sys.modules[name] = None``, so ``import typer`` raises ImportError."""

from __future__ import annotations

import sys

SERVER = ("fastapi", "uvicorn", "sqlalchemy", "psycopg", "alembic", "redis", "rq", "pydantic_settings")
CLI = ("typer", "rich", "httpx", "click", "yaml")


def _wrapper(missing: tuple[str, ...]) -> list[str]:
    code = (
        "import sys\n"
        f"for name in {missing!r}:\n"
        "    sys.modules[name] = None\n"
        "from flagyard.cli import main\n"
        "main()\n"
    )
    return [sys.executable, "-c", code]


BASE_FLAGYARD = _wrapper(CLI + SERVER)
CLI_ONLY_FLAGYARD = _wrapper(SERVER)
