"""Helpers the suites that run a whole stack share: a migrated database, the control plane's settings for a
test (inline outbox dispatch, no relay, no rate limits, quiet logs) on a prefix and queue of its own, the same
settings as the environment of a control plane run as a process, and the named children of a stack.

Importable by name from any test directory (``tests/`` is on the import path through its conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config

from flagyard.control_plane.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

_TEST_CONTROL_PLANE: dict[str, Any] = {
    "outbox_dispatch": "inline",
    "outbox_relay_interval_seconds": 0,
    "rate_limit_requests": 0,
    "access_log": False,
    "log_level": "WARNING",
}


def migrate(db_url: str) -> None:
    """Bring the database at ``db_url`` to the newest schema."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", db_url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


def sqlalchemy_url(database: str) -> str:
    """The SQLAlchemy (psycopg 3) URL of ``database`` on the test server."""
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    return server.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{database}"


@contextmanager
def fresh_database(label: str) -> Iterator[str]:
    """A new database ``flagyard_<label>_<random>`` migrated to the newest schema; yields its SQLAlchemy
    URL and drops it afterwards (connections still open are ended)."""
    name = f"flagyard_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db_url = sqlalchemy_url(name)
        migrate(db_url)
        yield db_url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stack_settings(db_url: str, redis_url: str, *, prefix: str, queue: str, **overrides: Any) -> Settings:
    """The control plane's settings for a test stack; ``overrides`` replace any default below."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": redis_url,
        "sync_queue": queue,
        "redis_prefix": prefix,
        **_TEST_CONTROL_PLANE,
    }
    return Settings(**{**values, **overrides})


def stack_env(db_url: str, redis_url: str, *, prefix: str, queue: str, **overrides: Any) -> dict[str, str]:
    """This process's environment without its own ``FLAGYARD_*`` variables (a developer's shell may set
    some), plus those that give a child of a test stack (control plane, syncer, data plane) the settings of
    :func:`stack_settings`; ``overrides`` are settings by name (``sdk_key_cache_seconds=0.3``)."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": redis_url,
        "sync_queue": queue,
        "redis_prefix": prefix,
        **_TEST_CONTROL_PLANE,
        **overrides,
    }
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLAGYARD_")}
    env.update({f"FLAGYARD_{name.upper()}": _env_value(value) for name, value in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Children:
    """The named child processes of a test stack, each started as ``python -m …`` (as an operator would)
    and logging to ``<logs>/<name>.log``, so a failure can quote what a child said."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.processes[name] = proc
        return proc

    def check_alive(self, name: str) -> None:
        """Fail with the child's log if it has exited."""
        code = self.processes[name].poll()
        if code is not None:
            raise AssertionError(f"{name} exited with {code}:\n{self.log_tail(name)}")

    def kill(self, name: str) -> None:
        """SIGKILL, wherever the child was (a crash, not a shutdown)."""
        proc = self.processes.pop(name)
        proc.kill()
        proc.wait(10)

    def stop_all(self) -> None:
        """SIGTERM to each, in start order reversed; SIGKILL to any still there after 10 s."""
        for name in reversed(list(self.processes)):
            proc = self.processes.pop(name)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
