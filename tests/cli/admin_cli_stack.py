"""Helpers of the admin CLI tests (a uniquely named module, importable next to the tests).

A real control plane: uvicorn serving ``create_app(settings)`` over TCP on a free port, in a background
thread, against a freshly migrated PostgreSQL database and its own Redis DB index, queue and key prefix.
The CLI runs through Typer's ``CliRunner`` (in process) or as the installed ``flagyard`` script.

The fixtures ``cp`` (one control plane per test module), ``cli`` and ``project`` are defined here and
re-exported by conftest.py; a module that needs another project defines its own ``project`` with
:func:`new_project`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import uvicorn
from alembic import command
from alembic.config import Config
from polling_helpers import free_port as free_port
from typer.testing import CliRunner, Result

from flagyard.cli.app import app
from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY, Settings

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_DB = int(os.environ.get("FLAGYARD_TEST_REDIS_DB", "9"))
"""Each test run uses its own keys (a prefix and queue per control plane); the index may be chosen too."""
ADMIN_KEY = DEV_BOOTSTRAP_ADMIN_KEY
FLAGYARD = Path(sys.executable).with_name("flagyard")


def database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new database migrated with Alembic to head; dropped afterwards."""
    name = f"flagyard_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", database_url(name))
        config.attributes["configure_logging"] = False
        command.upgrade(config, "head")
        yield database_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ControlPlane:
    """A running control plane and what the tests need to reach around it."""

    url: str
    settings: Settings
    redis: redis.Redis

    @property
    def queue(self) -> str:
        return self.settings.sync_queue

    @property
    def prefix(self) -> str:
        return self.settings.redis_prefix


@contextmanager
def control_plane(db_url: str) -> Iterator[ControlPlane]:
    """uvicorn serving the control plane on a free port in a thread; Redis keys it made are removed after."""
    tag = uuid.uuid4().hex[:8]
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    settings = Settings(
        database_url=db_url,  # type: ignore[arg-type]
        redis_url=redis_url,  # type: ignore[arg-type]
        sync_queue=f"flagyard-sync-cli-{tag}",
        redis_prefix=f"fycli-{tag}",
        outbox_dispatch="inline",
        outbox_relay_interval_seconds=0,
        rate_limit_requests=0,
        access_log=False,
        log_level="WARNING",
        db_pool_size=4,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the control plane did not start")
        time.sleep(0.02)
    client = redis.Redis.from_url(redis_url)
    try:
        yield ControlPlane(f"http://127.0.0.1:{port}", settings, client)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        remove_redis_keys(client, settings.redis_prefix, settings.sync_queue)
        client.close()


def remove_redis_keys(client: redis.Redis, prefix: str, queue: str) -> None:
    """Every key of the prefix, and everything RQ keeps for the queue and its jobs."""
    for pattern in (f"{prefix}:*", f"rq:*{queue}*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    for key in client.scan_iter("rq:job:*"):
        if client.hget(key, "origin") == queue.encode():
            client.delete(key, "rq:results:" + key.decode().removeprefix("rq:job:"))
    client.srem("rq:queues", f"rq:queue:{queue}")


class Cli:
    """Runs ``flagyard`` commands in process against one control plane."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def run(self, *args: str, key: str | None = ADMIN_KEY, stdin: str | None = None) -> Result:
        env = {"FLAGYARD_URL": self.url, "FLAGYARD_API_KEY": key, "COLUMNS": "200", "FLAGYARD_PROJECT": None}
        return self.runner.invoke(app, list(args), env=env, input=stdin, catch_exceptions=False)

    def ok(self, *args: str, key: str | None = ADMIN_KEY) -> Result:
        result = self.run(*args, key=key)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str, key: str | None = ADMIN_KEY) -> Any:
        return json.loads(self.ok("--json", *args, key=key).stdout)


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``flagyard`` console script as a real process."""
    return subprocess.run(
        [str(FLAGYARD), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def new_project(cli: Cli) -> str:
    """A new project (a fresh key) with environments dev and prod, made through the CLI; its key."""
    key = f"p{uuid.uuid4().hex[:8]}"
    cli.ok("projects", "create", key, "--name", "Shop")
    for env in ("dev", "prod"):
        cli.ok("envs", "create", env, "--project", key)
    return key


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    """A control plane on a freshly migrated database, shared by the tests of one module."""
    with fresh_database() as db_url, control_plane(db_url) as running:
        yield running


@pytest.fixture(scope="module")
def cli(cp: ControlPlane) -> Cli:
    return Cli(cp.url)


@pytest.fixture
def project(cli: Cli) -> str:
    """A new project with environments dev and prod, made through the CLI."""
    return new_project(cli)
